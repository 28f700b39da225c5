import FleetProtocol
import Foundation
import GRDB

/// RolloutStore.
extension SQLiteStore {
    public func saveRollout(_ r: Rollout) async throws {
        try await pool.write { db in try Self.saveRollout(r, db) }
    }

    static func saveRollout(_ r: Rollout, _ db: Database) throws {
        try db.execute(sql: "INSERT OR REPLACE INTO rollout(id, json, active, created_at) VALUES (?, ?, ?, ?)",
                       arguments: [r.id, try FleetJSON.encode(r), r.canChange, r.createdAt.timeIntervalSince1970])
    }

    public func updateRollouts<T: Sendable>(_ body: @escaping @Sendable (inout [Rollout]) throws -> T) async throws -> T {
        try await pool.write { db in
            let decoder = FleetJSON.makeDecoder()
            let before = try Data.fetchAll(db, sql: "SELECT json FROM rollout WHERE active ORDER BY created_at").compactMap { try? decoder.decode(Rollout.self, from: $0) }
            var after = before
            let result = try body(&after)
            let old = Dictionary(before.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            for r in after where old[r.id] != r { try Self.saveRollout(r, db) }
            return result
        }
    }

    public func rollouts() async throws -> [Rollout] {
        try await pool.read { db in
            try Data.fetchAll(db, sql: "SELECT json FROM rollout ORDER BY created_at DESC").compactMap { try? FleetJSON.makeDecoder().decode(Rollout.self, from: $0) }
        }
    }
}
