import FleetProtocol
import Foundation
import Logging
import PostgresNIO

/// RolloutStore.
extension PostgresStore {
    public func saveRollout(_ r: Rollout) async throws {
        let json = try FleetJSON.encode(r)
        try await client.withConnection { c in try await Self.saveRollout(r, json: json, on: c, logger: self.logger) }
    }

    static func saveRollout(_ r: Rollout, json: Data, on c: PostgresConnection, logger: Logger) async throws {
        try await c.query("""
            INSERT INTO rollout (id, json, active, created_at) VALUES (\(r.id), \(json), \(r.canChange), \(r.createdAt.timeIntervalSince1970))
            ON CONFLICT (id) DO UPDATE SET json = excluded.json, active = excluded.active
            """, logger: logger)
    }

    public func updateRollouts<T: Sendable>(_ body: @escaping @Sendable (inout [Rollout]) throws -> T) async throws -> T {
        let logger = self.logger
        // postgres-nio wraps what the closure throws (with the rollback's
        // outcome); the caller gets the body's own error, e.g. a conflict.
        var bodyError: (any Error)?
        do {
            return try await updateRollouts(body, logger: logger) { bodyError = $0 }
        } catch {
            throw bodyError ?? error
        }
    }

    private func updateRollouts<T: Sendable>(_ body: @escaping @Sendable (inout [Rollout]) throws -> T, logger: Logger,
                                             failed: (any Error) -> Void) async throws -> T {
        try await client.withTransaction(logger: logger) { c in
            // One updater at a time across replicas: a transaction lock, released at commit.
            try await c.query("SELECT pg_advisory_xact_lock(727275)", logger: logger)
            let decoder = FleetJSON.makeDecoder()
            var before: [Rollout] = []
            for try await json in try await c.query("SELECT json FROM rollout WHERE active ORDER BY created_at", logger: logger).decode(Data.self) {
                if let r = try? decoder.decode(Rollout.self, from: json) { before.append(r) }
            }
            var after = before
            let result: T
            do { result = try body(&after) } catch {
                failed(error)
                throw error
            }
            let old = Dictionary(before.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            for r in after where old[r.id] != r { try await Self.saveRollout(r, json: try FleetJSON.encode(r), on: c, logger: logger) }
            return result
        }
    }

    public func rollouts() async throws -> [Rollout] {
        try await decodeAll(Rollout.self, client.query("SELECT json FROM rollout ORDER BY created_at DESC", logger: logger), from: "rollout")
    }
}
