import FleetProtocol
import Foundation
import GRDB
import Logging

/// The console's SQLite database (WAL), the embedded default store. Ingest
/// hands it batches (`IngestBatch`) committed in one transaction each —
/// never a commit per message. Events are unique by (site, device, epoch,
/// seq), so a QoS 1 duplicate or a replay is stored once whatever the
/// in-memory state says. Migrations are named and append-only; PostgresStore
/// has the same ones under the same names (a test compares the schemas they
/// make). Each role of ConsoleStore is an extension in a file of its own.
/// GRDB runs every access on its own queues, so awaiting one never blocks a
/// Swift concurrency thread.
public final class SQLiteStore: ConsoleStore {
    let pool: DatabasePool
    /// Where rows that no longer decode are noted (at debug).
    let logger: Logger

    /// The writer connection's page cache, in KiB (see `init`).
    static let writerCacheKiB = 32 * 1024

    public init(path: String, logger: Logger = Logger(label: "fleet-console.sqlite")) throws {
        self.logger = logger
        var config = Configuration()
        config.label = "fleet-console"
        config.busyMode = .timeout(5)
        // WAL + synchronous=NORMAL: durable across process crashes; batches are
        // what make ingest fast, not skipped fsyncs (docs/operations.md).
        // For the writer only: a 32 MiB page cache (SQLite's default is
        // 2 MiB) keeps the event-key index of a busy fleet in memory instead
        // of re-reading its pages at every commit; checkpoints every 8,000
        // pages (32 MiB of WAL) instead of 1,000 copy a page that several
        // commits changed once, not once per commit. Both were measured with
        // fleet-bench ingest (BENCHMARKS.md). The readers serving the API keep
        // the default cache, so memory stays bounded however many are open.
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            if !db.configuration.readonly {
                try db.execute(sql: "PRAGMA cache_size = \(-Self.writerCacheKiB); PRAGMA wal_autocheckpoint = 8000")
            }
        }
        pool = try DatabasePool(path: path, configuration: config)
        try Self.migrator.migrate(pool)
    }

    /// Seconds since 1970 by SQLite's clock, with fractions.
    static let now = "((julianday('now') - 2440587.5) * 86400.0)"

    // MARK: Replicas

    public func acquireLease(_ name: String, holder: String, for seconds: Double) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO lease(name, holder, expires_at) VALUES (?, ?, \(Self.now) + ?)
                ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                WHERE lease.holder = excluded.holder OR lease.expires_at < \(Self.now)
                """, arguments: [name, holder, seconds])
            return try String.fetchOne(db, sql: "SELECT holder FROM lease WHERE name = ?", arguments: [name]) == holder
        }
    }

    public func releaseLease(_ name: String, holder: String) async throws {
        try await pool.write { db in try db.execute(sql: "DELETE FROM lease WHERE name = ? AND holder = ?", arguments: [name, holder]) }
    }

    public func close() async {
        try? pool.close()
    }
}
