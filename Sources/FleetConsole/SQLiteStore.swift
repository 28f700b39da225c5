import FleetProtocol
import Foundation
import GRDB

/// The console's SQLite database (WAL), the embedded default store. Ingest
/// hands it batches (`IngestBatch`) committed in one transaction each —
/// never a commit per message. Events are unique by (site, device, epoch,
/// seq), so a QoS 1 duplicate or a replay is stored once whatever the
/// in-memory state says. Migrations are named and append-only; PostgresStore
/// has the same ones under the same names. GRDB runs every access on its own
/// queues, so awaiting one never blocks a Swift concurrency thread.
public final class SQLiteStore: ConsoleStore {
    let pool: DatabasePool

    /// The writer connection's page cache, in KiB (see `init`).
    static let writerCacheKiB = 32 * 1024

    public init(path: String) throws {
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

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: devices, events, sessions, usage, alerts, commands, audit") { db in
            try db.create(table: "device") { t in
                t.column("site", .text).notNull()
                t.column("device", .text).notNull()
                t.column("json", .blob).notNull()
                t.primaryKey(["site", "device"])
            }
            try db.create(table: "event") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("site", .text).notNull()
                t.column("device", .text).notNull()
                t.column("epoch", .integer).notNull()
                t.column("seq", .integer).notNull()
                t.column("ts", .double).notNull()
                t.column("type", .text).notNull()
                t.column("session_id", .text)
                t.column("program", .text)
                t.column("reason", .text)
                t.column("historical", .boolean).notNull()
                t.column("payload", .blob).notNull()
                t.uniqueKey(["site", "device", "epoch", "seq"])
            }
            try db.create(index: "event_type_ts", on: "event", columns: ["type", "ts"])
            try db.create(table: "session") { t in
                t.primaryKey("session_id", .text)
                t.column("site", .text).notNull()
                t.column("device", .text).notNull()
                t.column("program", .text)
                t.column("started_at", .double)
                t.column("ended_at", .double)
                t.column("outcome", .text).notNull()
                t.column("reason", .text)
            }
            try db.create(index: "session_device", on: "session", columns: ["site", "device", "started_at"])
            try db.create(table: "usage_device") { t in
                t.column("site", .text).notNull()
                t.column("device", .text).notNull()
                t.column("last", .blob).notNull()      // the device's last cumulative counters
                t.column("total", .blob).notNull()     // reset-adjusted cumulative total
                t.primaryKey(["site", "device"])
            }
            try db.create(table: "usage_day") { t in
                t.column("site", .text).notNull()
                t.column("day", .text).notNull()
                t.column("json", .blob).notNull()
                t.primaryKey(["site", "day"])
            }
            try db.create(table: "alert") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("site", .text).notNull()
                t.column("device", .text)
                t.column("type", .text).notNull()
                t.column("severity", .text).notNull()
                t.column("message", .text).notNull()
                t.column("raised_at", .double).notNull()
                t.column("cleared_at", .double)
                t.column("acknowledged_by", .text)
                t.column("acknowledged_at", .double)
            }
            try db.create(table: "command") { t in
                t.primaryKey("id", .text)
                t.column("json", .blob).notNull()
                t.column("finished", .boolean).notNull().defaults(to: false)
                t.column("created_at", .double).notNull()
            }
            try db.create(table: "audit") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("at", .double).notNull()
                t.column("actor", .text).notNull()
                t.column("action", .text).notNull()
                t.column("targets", .text).notNull()
                t.column("outcome", .text).notNull()
                t.column("detail", .text)
            }
        }
        m.registerMigration("v2: rollouts") { db in
            try db.create(table: "rollout") { t in
                t.primaryKey("id", .text)
                t.column("json", .blob).notNull()
                t.column("active", .boolean).notNull()
                t.column("created_at", .double).notNull()
            }
        }
        m.registerMigration("v3: index only aborted events by time") { db in
            // The only query by type and time asks for aborted sessions (the
            // clinic's pain-signal warning). A partial index serves it; a full
            // (type, ts) index cost a B-tree insert for every stored event.
            try db.drop(index: "event_type_ts")
            try db.execute(sql: "CREATE INDEX event_aborted_ts ON event(ts) WHERE type = 'session_aborted'")
        }
        m.registerMigration("v4: replicas (device row writers, leases)") { db in
            try db.execute(sql: "ALTER TABLE device ADD COLUMN updated_at DOUBLE NOT NULL DEFAULT 0")
            try db.execute(sql: "ALTER TABLE device ADD COLUMN writer TEXT NOT NULL DEFAULT ''")
            try db.execute(sql: "CREATE INDEX device_updated ON device(updated_at)")
            try db.execute(sql: "CREATE TABLE lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at DOUBLE NOT NULL)")
        }
        m.registerMigration("v5: every rollout that can still change is active") { db in
            // v1–v4 flagged only running ones and those with offline devices;
            // the rollout loop now steps `active` rows only.
            let decoder = FleetJSON.makeDecoder()
            for json in try Data.fetchAll(db, sql: "SELECT json FROM rollout WHERE NOT active") {
                if let r = try? decoder.decode(Rollout.self, from: json), r.canChange { try saveRollout(r, db) }
            }
        }
        m.registerMigration("v6: retention (event floors, events by time)") { db in
            // The highest seq retention deleted per (device, epoch): the gap
            // scan starts above it. Events by time: retention deletes the
            // oldest in chunks without scanning the table.
            try db.execute(sql: "CREATE TABLE event_floor (site TEXT NOT NULL, device TEXT NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (site, device, epoch))")
            try db.execute(sql: "CREATE INDEX event_ts ON event(ts)")
        }
        return m
    }

    /// Seconds since 1970 by SQLite's clock, with fractions.
    static let now = "((julianday('now') - 2440587.5) * 86400.0)"

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

    public func devicesChanged(since: Double, excludingWriter writer: String) async throws -> (rows: [Data], newest: Double) {
        try await pool.read { db in
            var newest = since
            var rows: [Data] = []
            for row in try Row.fetchAll(db, sql: "SELECT json, updated_at FROM device WHERE updated_at > ? AND writer <> ?", arguments: [since, writer]) {
                rows.append(row["json"])
                newest = max(newest, row["updated_at"])
            }
            return (rows, newest)
        }
    }

    public func rollouts() async throws -> [Rollout] {
        try await pool.read { db in
            try Data.fetchAll(db, sql: "SELECT json FROM rollout ORDER BY created_at DESC").compactMap { try? FleetJSON.makeDecoder().decode(Rollout.self, from: $0) }
        }
    }

    /// Commits a batch; returns the events that were new (not duplicates).
    /// The statements are prepared once per connection (GRDB's statement
    /// cache), not parsed again for every row.
    @discardableResult
    public func commit(_ batch: IngestBatch) async throws -> [Event] {
        guard !batch.isEmpty else { return [] }
        return try await pool.write { db in
            let encoder = FleetJSON.makeEncoder()
            var inserted: [Event] = []
            if !batch.events.isEmpty {
                let insertEvent = try db.cachedStatement(sql: """
                    INSERT OR IGNORE INTO event(site, device, epoch, seq, ts, type, session_id, program, reason, historical, payload)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """)
                for (address, stamped, payload) in batch.events {
                    let e = stamped.body
                    try insertEvent.execute(arguments: [
                        address.site.rawValue, address.device.rawValue, Int64(bitPattern: stamped.envelope.epoch), Int64(bitPattern: stamped.envelope.seq),
                        stamped.envelope.ts.timeIntervalSince1970, e.type.rawValue, e.sessionID, e.program, e.reason?.rawValue,
                        stamped.envelope.historical, payload])
                    if db.changesCount > 0 { inserted.append(e) }
                }
            }
            if !batch.devices.isEmpty {
                let upsertDevice = try db.cachedStatement(sql: "INSERT OR REPLACE INTO device(site, device, json, updated_at, writer) VALUES (?, ?, ?, \(Self.now), ?)")
                for (address, json) in batch.devices {
                    try upsertDevice.execute(arguments: [address.site.rawValue, address.device.rawValue, json, batch.writer])
                }
            }
            if !batch.sessions.isEmpty {
                let upsertSession = try db.cachedStatement(sql: """
                    INSERT INTO session(session_id, site, device, program, started_at, ended_at, outcome, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(session_id) DO UPDATE SET program = coalesce(excluded.program, program),
                      started_at = coalesce(started_at, excluded.started_at), ended_at = coalesce(excluded.ended_at, ended_at),
                      outcome = CASE WHEN outcome IN ('completed','aborted','missed') THEN outcome ELSE excluded.outcome END,
                      reason = coalesce(excluded.reason, reason)
                    """)
                for (_, s) in batch.sessions {
                    try upsertSession.execute(arguments: [s.sessionID, s.site, s.device, s.program, s.startedAt?.timeIntervalSince1970,
                                                          s.endedAt?.timeIntervalSince1970, s.outcome, s.reason])
                }
            }
            if !batch.usage.isEmpty {
                let upsertUsage = try db.cachedStatement(sql: "INSERT OR REPLACE INTO usage_device(site, device, last, total) VALUES (?, ?, ?, ?)")
                for (address, u) in batch.usage {
                    try upsertUsage.execute(arguments: [address.site.rawValue, address.device.rawValue, try encoder.encode(u.last), try encoder.encode(u.total)])
                }
            }
            if !batch.usageDays.isEmpty {
                let upsertDay = try db.cachedStatement(sql: "INSERT OR REPLACE INTO usage_day(site, day, json) VALUES (?, ?, ?)")
                for (_, day) in batch.usageDays {
                    try upsertDay.execute(arguments: [day.site, day.day, try encoder.encode(day)])
                }
            }
            for (_, record) in batch.commands { try Self.saveCommand(record, db) }
            for entry in batch.audits { try Self.audit(entry, db) }
            return inserted
        }
    }

    // MARK: Reads used at start-up and by the API

    public func loadDevices() async throws -> [Data] {
        try await pool.read { db in try Data.fetchAll(db, sql: "SELECT json FROM device") }
    }

    public func loadUsage() async throws -> [StoredUsage] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT site, device, last, total FROM usage_device").map { StoredUsage(site: $0["site"], device: $0["device"], last: $0["last"], total: $0["total"]) }
        }
    }

    public func loadUsageDays() async throws -> [Data] {
        try await pool.read { db in try Data.fetchAll(db, sql: "SELECT json FROM usage_day") }
    }

    public func eventCount(site: String?, device: String?) async throws -> Int {
        try await pool.read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM event WHERE (? IS NULL OR site = ?) AND (? IS NULL OR device = ?)", arguments: [site, site, device, device]) ?? 0
        }
    }

    /// Events missing from the table, per device: seqs below the highest
    /// stored one of an epoch that are not stored, for epochs with an event
    /// in the last `within` seconds (older ones no device still holds).
    /// At most `limit` per device.
    public func missingEvents(within: TimeInterval, limit: Int, now: Date) async throws -> [DeviceAddress: [EventKey]] {
        try await pool.read { db in
            var out: [DeviceAddress: [EventKey]] = [:]
            // Above each epoch's floor (what retention deleted), if any.
            let groups = try Row.fetchAll(db, sql: """
                SELECT e.site, e.device, e.epoch, count(*) AS n, max(e.seq) AS top, coalesce(f.seq, 0) AS floor FROM event e
                LEFT JOIN event_floor f ON f.site = e.site AND f.device = e.device AND f.epoch = e.epoch
                WHERE e.seq > coalesce(f.seq, 0)
                GROUP BY e.site, e.device, e.epoch HAVING n < top - floor AND max(e.ts) >= ?
                """, arguments: [now.timeIntervalSince1970 - within])
            for g in groups {
                guard let address = try? DeviceAddress(site: g["site"] as String, device: g["device"] as String) else { continue }
                let epoch: Int64 = g["epoch"], floor: Int64 = g["floor"]
                let stored = Set(try Int64.fetchAll(db, sql: "SELECT seq FROM event WHERE site = ? AND device = ? AND epoch = ? AND seq > ?",
                                                    arguments: [g["site"] as String, g["device"] as String, epoch, floor]))
                EventKey.appendMissing(epoch: epoch, above: floor, below: g["top"], stored: stored, limit: limit, to: &out[address, default: []])
            }
            return out
        }
    }

    /// The last stored (epoch, seq) of each device's events, or of what
    /// retention deleted of them (its floors), whichever is newer.
    public func lastEventSequences() async throws -> [DeviceAddress: EventKey] {
        try await pool.read { db in
            var out: [DeviceAddress: EventKey] = [:]
            for table in ["event", "event_floor"] {
                for row in try Row.fetchAll(db, sql: "SELECT site, device, max(epoch * 4294967296 + seq) AS k, epoch, seq FROM \(table) GROUP BY site, device") {
                    if let a = try? DeviceAddress(site: row["site"] as String, device: row["device"] as String) {
                        out.keepNewest(a, EventKey(epoch: UInt64(bitPattern: row["epoch"] as Int64), seq: UInt64(bitPattern: row["seq"] as Int64)))
                    }
                }
            }
            return out
        }
    }

    public func sessions(site: String, device: String, limit: Int) async throws -> [SessionRecord] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM session WHERE site = ? AND device = ? ORDER BY coalesce(started_at, ended_at) DESC LIMIT ?", arguments: [site, device, limit]).map(Self.session)
        }
    }

    public func sessionsStarted(site: String, since: Date) async throws -> Int {
        try await pool.read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM session WHERE site = ? AND started_at >= ?", arguments: [site, since.timeIntervalSince1970]) ?? 0
        }
    }

    /// pain_signal aborts since `since`, grouped by (site, program).
    public func painSignalAborts(since: Date) async throws -> [PainSignalCount] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT site, program, count(*) AS n FROM event WHERE type = 'session_aborted' AND reason = 'pain_signal' AND ts >= ? AND program IS NOT NULL
                GROUP BY site, program
                """, arguments: [since.timeIntervalSince1970]).map { PainSignalCount(site: $0["site"], program: $0["program"], count: $0["n"]) }
        }
    }

    static func session(_ r: Row) -> SessionRecord {
        SessionRecord(sessionID: r["session_id"], site: r["site"], device: r["device"], program: r["program"],
                      startedAt: (r["started_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                      endedAt: (r["ended_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                      outcome: r["outcome"], reason: r["reason"])
    }

    // MARK: Forgetting a device

    public func forgetDevice(_ address: DeviceAddress, record: Data, writer: String, at: Date) async throws -> ForgetCounts {
        let zero = try FleetJSON.makeEncoder().encode(Usage())
        let (site, device) = (address.site.rawValue, address.device.rawValue)
        return try await pool.write { db in
            try db.execute(sql: "DELETE FROM event WHERE site = ? AND device = ?", arguments: [site, device])
            let events = db.changesCount
            try db.execute(sql: "DELETE FROM event_floor WHERE site = ? AND device = ?", arguments: [site, device])
            try db.execute(sql: "UPDATE usage_device SET last = ? WHERE site = ? AND device = ?", arguments: [zero, site, device])
            let usage = db.changesCount > 0
            try db.execute(sql: "UPDATE alert SET cleared_at = ? WHERE site = ? AND device = ? AND cleared_at IS NULL",
                           arguments: [at.timeIntervalSince1970, site, device])
            let alerts = db.changesCount
            try db.execute(sql: "INSERT OR REPLACE INTO device(site, device, json, updated_at, writer) VALUES (?, ?, ?, \(Self.now), ?)",
                           arguments: [site, device, record, writer])
            return ForgetCounts(events: events, alerts: alerts, usageBaselineReset: usage)
        }
    }

    // MARK: Alerts

    public func insertAlert(site: String, device: String?, type: String, severity: Health, message: String, at: Date) async throws -> Int64 {
        try await pool.write { db in
            try db.execute(sql: "INSERT INTO alert(site, device, type, severity, message, raised_at) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [site, device, type, severity.rawValue, message, at.timeIntervalSince1970])
            return db.lastInsertedRowID
        }
    }

    public func clearAlert(id: Int64, at: Date) async throws {
        try await pool.write { db in try db.execute(sql: "UPDATE alert SET cleared_at = ? WHERE id = ?", arguments: [at.timeIntervalSince1970, id]) }
    }

    public func acknowledgeAlert(id: Int64, by: String, at: Date) async throws -> AlertRecord? {
        try await pool.write { db in
            try db.execute(sql: "UPDATE alert SET acknowledged_by = ?, acknowledged_at = ? WHERE id = ?", arguments: [by, at.timeIntervalSince1970, id])
            return try Row.fetchOne(db, sql: "SELECT * FROM alert WHERE id = ?", arguments: [id]).map(Self.alert)
        }
    }

    public func alerts(activeOnly: Bool, limit: Int) async throws -> [AlertRecord] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM alert \(activeOnly ? "WHERE cleared_at IS NULL" : "") ORDER BY id DESC LIMIT ?", arguments: [limit]).map(Self.alert)
        }
    }

    static func alert(_ r: Row) -> AlertRecord {
        AlertRecord(id: r["id"], site: r["site"], device: r["device"], type: r["type"], severity: Health(rawValue: r["severity"]) ?? .warning,
                    message: r["message"], raisedAt: Date(timeIntervalSince1970: r["raised_at"]),
                    clearedAt: (r["cleared_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                    acknowledgedBy: r["acknowledged_by"], acknowledgedAt: (r["acknowledged_at"] as Double?).map(Date.init(timeIntervalSince1970:)))
    }

    // MARK: Commands and audit

    public func saveCommand(_ record: CommandRecord) async throws {
        try await pool.write { db in try Self.saveCommand(record, db) }
    }

    static func saveCommand(_ record: CommandRecord, _ db: Database) throws {
        try db.execute(sql: """
            INSERT INTO command(id, json, finished, created_at) VALUES (?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET json = excluded.json, finished = excluded.finished WHERE NOT command.finished
            """, arguments: [record.id, try FleetJSON.encode(record), record.isFinished, record.createdAt.timeIntervalSince1970])
    }

    public func command(id: String) async throws -> CommandRecord? {
        try await pool.read { db in
            try Data.fetchOne(db, sql: "SELECT json FROM command WHERE id = ?", arguments: [id]).flatMap { try? FleetJSON.makeDecoder().decode(CommandRecord.self, from: $0) }
        }
    }

    public func unfinishedCommands() async throws -> [CommandRecord] {
        try await pool.read { db in
            try Data.fetchAll(db, sql: "SELECT json FROM command WHERE finished = 0").compactMap { try? FleetJSON.makeDecoder().decode(CommandRecord.self, from: $0) }
        }
    }

    public func recentCommands(limit: Int) async throws -> [CommandRecord] {
        try await pool.read { db in
            try Data.fetchAll(db, sql: "SELECT json FROM command ORDER BY created_at DESC LIMIT ?", arguments: [limit]).compactMap { try? FleetJSON.makeDecoder().decode(CommandRecord.self, from: $0) }
        }
    }

    public func audit(_ entry: AuditDraft) async throws {
        try await pool.write { db in try Self.audit(entry, db) }
    }

    static func audit(_ e: AuditDraft, _ db: Database) throws {
        try db.execute(sql: "INSERT INTO audit(at, actor, action, targets, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)",
                       arguments: [e.at.timeIntervalSince1970, e.actor, e.action, e.targets, e.outcome, e.detail])
    }

    public func auditEntries(limit: Int) async throws -> [AuditEntry] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM audit ORDER BY id DESC LIMIT ?", arguments: [limit]).map {
                AuditEntry(id: $0["id"], at: Date(timeIntervalSince1970: $0["at"]), actor: $0["actor"], action: $0["action"],
                           targets: $0["targets"], outcome: $0["outcome"], detail: $0["detail"])
            }
        }
    }

    public func close() async {
        try? pool.close()
    }
}
