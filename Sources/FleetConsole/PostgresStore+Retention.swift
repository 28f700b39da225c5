import FleetProtocol
import Foundation
import PostgresNIO

extension PostgresStore {
    public func prune(_ cutoffs: RetentionCutoffs, chunk: Int) async throws -> PruneCounts {
        var counts = PruneCounts()
        let limit = Int64(chunk)
        if let before = cutoffs.events?.timeIntervalSince1970 {
            while case let n = try await pruneEvents(before: before, chunk: limit), n > 0 { counts.events += n }
        }
        if let before = cutoffs.sessions?.timeIntervalSince1970 {
            counts.sessions = try await deleteInChunks {
                """
                WITH d AS (DELETE FROM session WHERE session_id IN
                  (SELECT session_id FROM session WHERE coalesce(ended_at, started_at) < \(before) LIMIT \(limit)) RETURNING 1)
                SELECT count(*) FROM d
                """
            }
        }
        if let before = cutoffs.alerts?.timeIntervalSince1970 {
            counts.alerts = try await deleteInChunks {
                "WITH d AS (DELETE FROM alert WHERE id IN (SELECT id FROM alert WHERE cleared_at < \(before) LIMIT \(limit)) RETURNING 1) SELECT count(*) FROM d"
            }
        }
        return counts
    }

    /// One chunk of the oldest events before `before`, with their floors, in one transaction.
    private func pruneEvents(before: Double, chunk: Int64) async throws -> Int {
        let logger = self.logger
        return try await client.withTransaction(logger: logger) { c in
            var rows: [(Int64, PrunedEvent)] = []
            let query: PostgresQuery = "SELECT id, site, device, epoch, seq FROM event WHERE ts < \(before) ORDER BY ts LIMIT \(chunk) FOR UPDATE"
            for try await (id, site, device, epoch, seq) in try await c.query(query, logger: logger).decode((Int64, String, String, Int64, Int64).self) {
                rows.append((id, PrunedEvent(site: site, device: device, epoch: epoch, seq: seq)))
            }
            guard !rows.isEmpty else { return 0 }
            for f in PrunedEvent.floors(rows.map(\.1)) {
                try await c.query("""
                    INSERT INTO event_floor (site, device, epoch, seq) VALUES (\(f.site), \(f.device), \(f.epoch), \(f.seq))
                    ON CONFLICT (site, device, epoch) DO UPDATE SET seq = GREATEST(event_floor.seq, excluded.seq)
                    """, logger: logger)
            }
            let ids = rows.map(\.0)
            var deleted: Int64 = 0
            for try await n in try await c.query("WITH d AS (DELETE FROM event WHERE id = ANY(\(ids)) RETURNING 1) SELECT count(*) FROM d", logger: logger).decode(Int64.self) {
                deleted = n
            }
            return Int(deleted)
        }
    }

    /// Runs the counted DELETE `query` makes until it deletes nothing; one transaction each.
    private func deleteInChunks(_ query: () -> PostgresQuery) async throws -> Int {
        var total = 0
        while true {
            let n = try await collect(client.query(query(), logger: logger).decode(Int64.self)).first ?? 0
            guard n > 0 else { return total }
            total += Int(n)
        }
    }

    /// The database's size; its free disk is the database host's to watch.
    public func storageStatus() async throws -> StorageStatus {
        let size = try await collect(client.query("SELECT pg_database_size(current_database())", logger: logger).decode(Int64.self)).first ?? 0
        return StorageStatus(databaseBytes: size, freeBytes: nil)
    }
}
