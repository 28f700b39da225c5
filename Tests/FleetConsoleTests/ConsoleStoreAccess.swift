import Foundation
import Logging
@testable import FleetConsole

/// Opens the console's own store (SQLite or PostgreSQL, as the console ran
/// it) for the one thing the API cannot show directly: how many times an
/// event was stored. For SQLite, open it only after the console stopped.
enum ConsoleStoreAccess {
    static func withStore<T: Sendable>(_ database: String, _ body: (any ConsoleStore) async throws -> T) async throws -> T {
        let store = try await StoreLocation.parse(database).open(logger: Logger(label: "test-store-access"))
        do {
            let result = try await body(store)
            await store.close()
            return result
        } catch {
            await store.close()
            throw error
        }
    }

    static func eventCount(database: String, site: String, device: String) async throws -> Int {
        try await withStore(database) { try await $0.eventCount(site: site, device: device) }
    }
}
