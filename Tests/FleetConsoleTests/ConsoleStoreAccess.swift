import Foundation
@testable import FleetConsole

/// Reads the console's own SQLite store through its `FleetStore`, for the
/// one thing the API cannot show directly: how many times an event was
/// stored. Open it only after the console stopped.
enum ConsoleStoreAccess {
    static func eventCount(database: URL, site: String, device: String) throws -> Int {
        let store = try FleetStore(path: database.path)
        return try store.eventCount(site: site, device: device)
    }
}
