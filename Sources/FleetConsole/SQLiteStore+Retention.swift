import FleetProtocol
import Foundation
import GRDB

extension SQLiteStore {
    public func prune(_ cutoffs: RetentionCutoffs, chunk: Int) async throws -> PruneCounts {
        var counts = PruneCounts()
        if let before = cutoffs.events?.timeIntervalSince1970 {
            while case let n = try await pruneEvents(before: before, chunk: chunk), n > 0 { counts.events += n }
        }
        if let before = cutoffs.sessions?.timeIntervalSince1970 {
            counts.sessions = try await deleteInChunks(chunk, """
                DELETE FROM session WHERE session_id IN
                  (SELECT session_id FROM session WHERE coalesce(ended_at, started_at) < ? LIMIT ?)
                """, before)
        }
        if let before = cutoffs.alerts?.timeIntervalSince1970 {
            counts.alerts = try await deleteInChunks(chunk, "DELETE FROM alert WHERE id IN (SELECT id FROM alert WHERE cleared_at < ? LIMIT ?)", before)
        }
        return counts
    }

    /// One chunk of the oldest events before `before`, with their floors, in one transaction.
    private func pruneEvents(before: Double, chunk: Int) async throws -> Int {
        try await pool.write { db in
            let rows = try Row.fetchAll(db, sql: "SELECT id, site, device, epoch, seq FROM event WHERE ts < ? ORDER BY ts LIMIT ?", arguments: [before, chunk])
            guard !rows.isEmpty else { return 0 }
            let upsert = try db.cachedStatement(sql: """
                INSERT INTO event_floor(site, device, epoch, seq) VALUES (?, ?, ?, ?)
                ON CONFLICT(site, device, epoch) DO UPDATE SET seq = max(seq, excluded.seq)
                """)
            for f in PrunedEvent.floors(rows.map { PrunedEvent(site: $0["site"], device: $0["device"], epoch: $0["epoch"], seq: $0["seq"]) }) {
                try upsert.execute(arguments: [f.site, f.device, f.epoch, f.seq])
            }
            let ids: [Int64] = rows.map { $0["id"] }
            try db.execute(sql: "DELETE FROM event WHERE id IN (\(databaseQuestionMarks(count: ids.count)))", arguments: StatementArguments(ids))
            return db.changesCount
        }
    }

    /// Runs `sql` (bound to `before`, `chunk`) until it deletes nothing; one transaction each.
    private func deleteInChunks(_ chunk: Int, _ sql: String, _ before: Double) async throws -> Int {
        var total = 0
        while true {
            let n = try await pool.write { db in
                try db.execute(sql: sql, arguments: [before, chunk])
                return db.changesCount
            }
            guard n > 0 else { return total }
            total += n
        }
    }

    public func storageStatus() async throws -> StorageStatus {
        let pages = try await pool.read { db in
            (try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 0) * (try Int64.fetchOne(db, sql: "PRAGMA page_size") ?? 0)
        }
        let wal = (try? FileManager.default.attributesOfItem(atPath: pool.path + "-wal")[.size] as? Int64) ?? 0
        return StorageStatus(databaseBytes: pages + wal, freeBytes: Self.freeBytes(beside: pool.path))
    }

    /// Free bytes for an unprivileged writer on the file system holding `path`.
    static func freeBytes(beside path: String) -> Int64? {
        var s = statvfs()
        guard statvfs((path as NSString).deletingLastPathComponent, &s) == 0 else { return nil }
        return Int64(s.f_bavail) * Int64(s.f_frsize)
    }
}
