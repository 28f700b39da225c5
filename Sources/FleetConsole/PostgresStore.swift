import FleetProtocol
import Foundation
import Logging
import NIOSSL
import PostgresNIO

/// The console's store on PostgreSQL (postgres-nio), for consoles that
/// outgrow one machine: replicas share it (docs/scaling.md). The schema
/// and its semantics are SQLiteStore's — the same tables, keys, upserts and
/// named migrations — so the same test suite runs against both.
///
/// A batch is one transaction of multi-row statements (one round trip per
/// table, not per row). Rows are written in key order so that two replicas
/// committing overlapping batches lock them in the same order. Exactly-once
/// storage of events is the unique key (site, device, epoch, seq) with
/// `ON CONFLICT DO NOTHING … RETURNING`: what comes back is what was new.
public final class PostgresStore: ConsoleStore {
    let client: PostgresClient
    let logger: Logger
    /// Runs the client's connection pool until `close()`. The pool must run
    /// before the first query (start-up reads happen before the console's
    /// service group runs), so the store owns this task rather than the group.
    private let runner: Task<Void, Never>

    public init(location: PostgresLocation, logger: Logger) async throws {
        // One connection first: a wrong address, password or TLS setting
        // (a server without TLS under sslmode=verify-full) is an error now,
        // not a pool that retries in the background while start-up waits.
        do { try await StoreCopier.probe(location, logger: logger) } catch let error as StoreCopyError {
            throw PostgresStoreError(message: error.message)
        }
        let tls: PostgresClient.Configuration.TLS = location.tlsConfiguration.map { .require($0) } ?? .disable
        var configuration = PostgresClient.Configuration(host: location.host, port: location.port, username: location.user,
                                                         password: location.password, database: location.database, tls: tls)
        configuration.options.maximumConnections = 8
        var background = logger
        background.logLevel = max(logger.logLevel, .notice)
        let client = PostgresClient(configuration: configuration, backgroundLogger: background)
        self.client = client
        self.logger = logger
        // Queries wait for the pool; starting them before run() began only
        // makes postgres-nio log a misleading warning, so wait for the task to start.
        let (started, signal) = AsyncStream.makeStream(of: Void.self)
        runner = Task {
            signal.finish()
            await client.run()
        }
        for await _ in started {}
        do {
            try await Self.migrate(client, logger: logger)
        } catch {
            runner.cancel()
            throw PostgresStoreError(message: "cannot open \(location.redacted): \(String(reflecting: error))")
        }
    }

    public func close() async {
        runner.cancel()
        _ = await runner.value
    }

    deinit { runner.cancel() }

    // MARK: Migrations

    /// The same named migrations as SQLiteStore, in PostgreSQL's dialect.
    /// Applied in one transaction under an advisory lock, so replicas that
    /// start together migrate once.
    struct Migration: Sendable {
        var name: String
        var sql: [String]
        /// Run after the statements, for what SQL alone cannot say.
        var code: (@Sendable (PostgresConnection, Logger) async throws -> Void)?
        init(_ name: String, _ sql: [String], code: (@Sendable (PostgresConnection, Logger) async throws -> Void)? = nil) {
            (self.name, self.sql, self.code) = (name, sql, code)
        }
    }

    static let migrations: [Migration] = [
        Migration("v1: devices, events, sessions, usage, alerts, commands, audit", [
            "CREATE TABLE device (site text NOT NULL, device text NOT NULL, json bytea NOT NULL, PRIMARY KEY (site, device))",
            """
            CREATE TABLE event (id bigserial PRIMARY KEY, site text NOT NULL, device text NOT NULL, epoch bigint NOT NULL, seq bigint NOT NULL,
              ts double precision NOT NULL, type text NOT NULL, session_id text, program text, reason text, historical boolean NOT NULL,
              payload bytea NOT NULL, UNIQUE (site, device, epoch, seq))
            """,
            "CREATE INDEX event_type_ts ON event (type, ts)",
            """
            CREATE TABLE session (session_id text PRIMARY KEY, site text NOT NULL, device text NOT NULL, program text,
              started_at double precision, ended_at double precision, outcome text NOT NULL, reason text)
            """,
            "CREATE INDEX session_device ON session (site, device, started_at)",
            "CREATE TABLE usage_device (site text NOT NULL, device text NOT NULL, last bytea NOT NULL, total bytea NOT NULL, PRIMARY KEY (site, device))",
            "CREATE TABLE usage_day (site text NOT NULL, day text NOT NULL, json bytea NOT NULL, PRIMARY KEY (site, day))",
            """
            CREATE TABLE alert (id bigserial PRIMARY KEY, site text NOT NULL, device text, type text NOT NULL, severity text NOT NULL,
              message text NOT NULL, raised_at double precision NOT NULL, cleared_at double precision, acknowledged_by text,
              acknowledged_at double precision)
            """,
            "CREATE TABLE command (id text PRIMARY KEY, json bytea NOT NULL, finished boolean NOT NULL DEFAULT false, created_at double precision NOT NULL)",
            """
            CREATE TABLE audit (id bigserial PRIMARY KEY, at double precision NOT NULL, actor text NOT NULL, action text NOT NULL,
              targets text NOT NULL, outcome text NOT NULL, detail text)
            """,
        ]),
        Migration("v2: rollouts", [
            "CREATE TABLE rollout (id text PRIMARY KEY, json bytea NOT NULL, active boolean NOT NULL, created_at double precision NOT NULL)",
        ]),
        Migration("v3: index only aborted events by time", [
            "DROP INDEX event_type_ts",
            "CREATE INDEX event_aborted_ts ON event (ts) WHERE type = 'session_aborted'",
        ]),
        Migration("v4: replicas (device row writers, leases)", [
            "ALTER TABLE device ADD COLUMN updated_at double precision NOT NULL DEFAULT 0",
            "ALTER TABLE device ADD COLUMN writer text NOT NULL DEFAULT ''",
            "CREATE INDEX device_updated ON device (updated_at)",
            "CREATE TABLE lease (name text PRIMARY KEY, holder text NOT NULL, expires_at double precision NOT NULL)",
        ]),
        // As SQLiteStore's v5: the rollout loop steps `active` rows only.
        Migration("v5: every rollout that can still change is active", []) { c, logger in
            let decoder = FleetJSON.makeDecoder()
            var stale: [Rollout] = []
            for try await json in try await c.query("SELECT json FROM rollout WHERE NOT active", logger: logger).decode(Data.self) {
                if let r = try? decoder.decode(Rollout.self, from: json), r.canChange { stale.append(r) }
            }
            for r in stale { try await saveRollout(r, json: try FleetJSON.encode(r), on: c, logger: logger) }
        },
        // As SQLiteStore's v6.
        Migration("v6: retention (event floors, events by time)", [
            "CREATE TABLE event_floor (site text NOT NULL, device text NOT NULL, epoch bigint NOT NULL, seq bigint NOT NULL, PRIMARY KEY (site, device, epoch))",
            "CREATE INDEX event_ts ON event (ts)",
        ]),
    ]

    /// Seconds since 1970 by the server's clock: every replica's leases and
    /// row times on one clock, whatever their machines' clocks say.
    static let now = "extract(epoch from clock_timestamp())::double precision"

    static func migrate(_ client: PostgresClient, logger: Logger) async throws {
        try await client.withTransaction(logger: logger) { c in
            // Any constant works as long as every console uses the same one.
            try await c.query("SELECT pg_advisory_xact_lock(727274)", logger: logger)
            try await c.query("CREATE TABLE IF NOT EXISTS console_migrations (identifier text PRIMARY KEY, applied_at double precision NOT NULL)", logger: logger)
            var applied = Set<String>()
            for try await name in try await c.query("SELECT identifier FROM console_migrations", logger: logger).decode(String.self) { applied.insert(name) }
            for migration in migrations where !applied.contains(migration.name) {
                for statement in migration.sql { try await c.query(PostgresQuery(unsafeSQL: statement), logger: logger) }
                try await migration.code?(c, logger)
                try await c.query("INSERT INTO console_migrations (identifier, applied_at) VALUES (\(migration.name), \(Date().timeIntervalSince1970))", logger: logger)
                logger.info("database migrated", metadata: ["migration": "\(migration.name)"])
            }
        }
    }

    // MARK: Batches

    /// Rows per multi-row statement: well under PostgreSQL's 65,535 parameters.
    static let rowsPerStatement = 1000

    @discardableResult
    public func commit(_ batch: IngestBatch) async throws -> [Event] {
        guard !batch.isEmpty else { return [] }
        let encoder = FleetJSON.makeEncoder()
        // Everything encoded before the transaction starts: it holds locks only while talking to the server.
        let events = batch.events.sorted { ($0.0, $0.1.envelope.epoch, $0.1.envelope.seq) < ($1.0, $1.1.envelope.epoch, $1.1.envelope.seq) }
        let devices = batch.devices.sorted { $0.key < $1.key }
        let sessions = batch.sessions.values.sorted { $0.sessionID < $1.sessionID }
        let usage = try batch.usage.sorted { $0.key < $1.key }.map { ($0.key, try encoder.encode($0.value.last), try encoder.encode($0.value.total)) }
        let days = try batch.usageDays.values.sorted { ($0.site, $0.day) < ($1.site, $1.day) }.map { ($0, try encoder.encode($0)) }
        let commands = try batch.commands.values.sorted { $0.id < $1.id }.map { ($0, try FleetJSON.encode($0)) }
        let logger = self.logger
        return try await client.withTransaction(logger: logger) { c in
            var inserted: [Event] = []
            for chunk in events.chunked(Self.rowsPerStatement) {
                var binds = PostgresBindings(capacity: chunk.count * 11)
                for (address, stamped, payload) in chunk {
                    let e = stamped.body
                    binds.append(address.site.rawValue); binds.append(address.device.rawValue)
                    binds.append(Int64(bitPattern: stamped.envelope.epoch)); binds.append(Int64(bitPattern: stamped.envelope.seq))
                    binds.append(stamped.envelope.ts.timeIntervalSince1970); binds.append(Self.text(e.type.rawValue))
                    binds.append(e.sessionID.map(Self.text)); binds.append(e.program.map(Self.text)); binds.append(e.reason.map { Self.text($0.rawValue) })
                    binds.append(stamped.envelope.historical); try binds.append(payload)
                }
                let sql = "INSERT INTO event (site, device, epoch, seq, ts, type, session_id, program, reason, historical, payload) VALUES "
                    + Self.placeholders(rows: chunk.count, columns: 11) + " ON CONFLICT DO NOTHING RETURNING site, device, epoch, seq"
                var new = Set<EventRow>()
                for try await (site, device, epoch, seq) in try await c.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger)
                    .decode((String, String, Int64, Int64).self) {
                    new.insert(EventRow(site: site, device: device, epoch: epoch, seq: seq))
                }
                for (address, stamped, _) in chunk {
                    let key = EventRow(site: address.site.rawValue, device: address.device.rawValue,
                                       epoch: Int64(bitPattern: stamped.envelope.epoch), seq: Int64(bitPattern: stamped.envelope.seq))
                    // A key sent twice in one batch comes back once: only its first copy is new.
                    if new.remove(key) != nil { inserted.append(stamped.body) }
                }
            }
            for chunk in devices.chunked(Self.rowsPerStatement) {
                var binds = PostgresBindings(capacity: chunk.count * 3 + 1)
                binds.append(batch.writer)
                for (address, json) in chunk { binds.append(address.site.rawValue); binds.append(address.device.rawValue); try binds.append(json) }
                // $1 is the writer; each row is (site, device, json).
                let rows = (0..<chunk.count).map { i in "($\(3 * i + 2), $\(3 * i + 3), $\(3 * i + 4), \(Self.now), $1)" }.joined(separator: ", ")
                try await c.query(PostgresQuery(unsafeSQL: "INSERT INTO device (site, device, json, updated_at, writer) VALUES " + rows
                    + " ON CONFLICT (site, device) DO UPDATE SET json = excluded.json, updated_at = excluded.updated_at, writer = excluded.writer",
                    binds: binds), logger: logger)
            }
            for chunk in sessions.chunked(Self.rowsPerStatement) {
                var binds = PostgresBindings(capacity: chunk.count * 8)
                for s in chunk {
                    binds.append(Self.text(s.sessionID)); binds.append(s.site); binds.append(s.device); binds.append(s.program.map(Self.text))
                    binds.append(s.startedAt?.timeIntervalSince1970); binds.append(s.endedAt?.timeIntervalSince1970)
                    binds.append(Self.text(s.outcome)); binds.append(s.reason.map(Self.text))
                }
                // The same merge as SQLiteStore's: a late start never reopens an ended session.
                try await c.query(PostgresQuery(unsafeSQL: """
                    INSERT INTO session (session_id, site, device, program, started_at, ended_at, outcome, reason) VALUES \(Self.placeholders(rows: chunk.count, columns: 8))
                    ON CONFLICT (session_id) DO UPDATE SET program = coalesce(excluded.program, session.program),
                      started_at = coalesce(session.started_at, excluded.started_at), ended_at = coalesce(excluded.ended_at, session.ended_at),
                      outcome = CASE WHEN session.outcome IN ('completed','aborted','missed') THEN session.outcome ELSE excluded.outcome END,
                      reason = coalesce(excluded.reason, session.reason)
                    """, binds: binds), logger: logger)
            }
            for chunk in usage.chunked(Self.rowsPerStatement) {
                var binds = PostgresBindings(capacity: chunk.count * 4)
                for (address, last, total) in chunk { binds.append(address.site.rawValue); binds.append(address.device.rawValue); try binds.append(last); try binds.append(total) }
                try await c.query(PostgresQuery(unsafeSQL: "INSERT INTO usage_device (site, device, last, total) VALUES " + Self.placeholders(rows: chunk.count, columns: 4)
                    + " ON CONFLICT (site, device) DO UPDATE SET last = excluded.last, total = excluded.total", binds: binds), logger: logger)
            }
            for chunk in days.chunked(Self.rowsPerStatement) {
                var binds = PostgresBindings(capacity: chunk.count * 3)
                for (day, json) in chunk { binds.append(day.site); binds.append(day.day); try binds.append(json) }
                try await c.query(PostgresQuery(unsafeSQL: "INSERT INTO usage_day (site, day, json) VALUES " + Self.placeholders(rows: chunk.count, columns: 3)
                    + " ON CONFLICT (site, day) DO UPDATE SET json = excluded.json", binds: binds), logger: logger)
            }
            for (record, json) in commands { try await Self.saveCommand(record, json: json, on: c, logger: logger) }
            for entry in batch.audits { try await Self.audit(entry, on: c, logger: logger) }
            return inserted
        }
    }

    private struct EventRow: Hashable {
        var site: String, device: String, epoch: Int64, seq: Int64
    }

    /// PostgreSQL's `text` cannot hold NUL (SQLSTATE 22021), and one such
    /// value from a device would fail every batch after it: NUL becomes
    /// U+FFFD in text columns. (The raw payload is kept, as bytea.)
    static func text(_ s: String) -> String {
        s.contains("\u{0}") ? s.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}") : s
    }

    /// `($1, $2, $3), ($4, $5, $6), …`
    static func placeholders(rows: Int, columns: Int) -> String {
        var out = ""
        out.reserveCapacity(rows * columns * 5)
        var n = 0
        for row in 0..<rows {
            out += row == 0 ? "(" : ", ("
            for column in 0..<columns {
                n += 1
                out += column == 0 ? "$\(n)" : ", $\(n)"
            }
            out += ")"
        }
        return out
    }

    // MARK: Start-up reads

    public func loadDevices() async throws -> [Data] {
        try await collect(client.query("SELECT json FROM device", logger: logger).decode(Data.self))
    }

    public func loadUsage() async throws -> [StoredUsage] {
        try await collect(client.query("SELECT site, device, last, total FROM usage_device", logger: logger).decode((String, String, Data, Data).self))
            .map { StoredUsage(site: $0.0, device: $0.1, last: $0.2, total: $0.3) }
    }

    public func loadUsageDays() async throws -> [Data] {
        try await collect(client.query("SELECT json FROM usage_day", logger: logger).decode(Data.self))
    }

    /// The last stored (epoch, seq) of each device's events, or of what
    /// retention deleted of them (its floors), whichever is newer.
    public func lastEventSequences() async throws -> [DeviceAddress: EventKey] {
        var out: [DeviceAddress: EventKey] = [:]
        for query: PostgresQuery in [
            "SELECT DISTINCT ON (site, device) site, device, epoch, seq FROM event ORDER BY site DESC, device DESC, epoch DESC, seq DESC",
            "SELECT DISTINCT ON (site, device) site, device, epoch, seq FROM event_floor ORDER BY site DESC, device DESC, epoch DESC, seq DESC",
        ] {
            for try await (site, device, epoch, seq) in try await client.query(query, logger: logger).decode((String, String, Int64, Int64).self) {
                if let a = try? DeviceAddress(site: site, device: device) { out.keepNewest(a, EventKey(epoch: UInt64(bitPattern: epoch), seq: UInt64(bitPattern: seq))) }
            }
        }
        return out
    }

    public func missingEvents(within: TimeInterval, limit: Int, now: Date) async throws -> [DeviceAddress: [EventKey]] {
        let since = now.timeIntervalSince1970 - within
        // Above each epoch's floor (what retention deleted), if any.
        let groups = try await collect(client.query("""
            SELECT e.site, e.device, e.epoch, max(e.seq), coalesce(f.seq, 0) FROM event e
            LEFT JOIN event_floor f ON f.site = e.site AND f.device = e.device AND f.epoch = e.epoch
            WHERE e.seq > coalesce(f.seq, 0)
            GROUP BY e.site, e.device, e.epoch, f.seq HAVING count(*) < max(e.seq) - coalesce(f.seq, 0) AND max(e.ts) >= \(since)
            """, logger: logger).decode((String, String, Int64, Int64, Int64).self))
        var out: [DeviceAddress: [EventKey]] = [:]
        for (site, device, epoch, top, floor) in groups {
            guard let address = try? DeviceAddress(site: site, device: device) else { continue }
            let stored = Set(try await collect(client.query("SELECT seq FROM event WHERE site = \(site) AND device = \(device) AND epoch = \(epoch) AND seq > \(floor)", logger: logger)
                .decode(Int64.self)))
            EventKey.appendMissing(epoch: epoch, above: floor, below: top, stored: stored, limit: limit, to: &out[address, default: []])
        }
        return out
    }

    // MARK: Queries

    public func eventCount(site: String?, device: String?) async throws -> Int {
        let rows = try await client.query("""
            SELECT count(*) FROM event WHERE (\(site)::text IS NULL OR site = \(site)) AND (\(device)::text IS NULL OR device = \(device))
            """, logger: logger)
        return Int(try await collect(rows.decode(Int64.self)).first ?? 0)
    }

    public func sessions(site: String, device: String, limit: Int) async throws -> [SessionRecord] {
        try await collect(client.query("""
            SELECT session_id, site, device, program, started_at, ended_at, outcome, reason FROM session WHERE site = \(site) AND device = \(device)
            ORDER BY coalesce(started_at, ended_at) DESC LIMIT \(Int64(limit))
            """, logger: logger).decode((String, String, String, String?, Double?, Double?, String, String?).self)).map {
            SessionRecord(sessionID: $0.0, site: $0.1, device: $0.2, program: $0.3, startedAt: $0.4.map(Date.init(timeIntervalSince1970:)),
                          endedAt: $0.5.map(Date.init(timeIntervalSince1970:)), outcome: $0.6, reason: $0.7)
        }
    }

    public func sessionsStarted(site: String, since: Date) async throws -> Int {
        let rows = try await client.query("SELECT count(*) FROM session WHERE site = \(site) AND started_at >= \(since.timeIntervalSince1970)", logger: logger)
        return Int(try await collect(rows.decode(Int64.self)).first ?? 0)
    }

    public func painSignalAborts(since: Date) async throws -> [PainSignalCount] {
        try await collect(client.query("""
            SELECT site, program, count(*) FROM event WHERE type = 'session_aborted' AND reason = 'pain_signal' AND ts >= \(since.timeIntervalSince1970)
              AND program IS NOT NULL GROUP BY site, program
            """, logger: logger).decode((String, String, Int64).self)).map { PainSignalCount(site: $0.0, program: $0.1, count: Int($0.2)) }
    }

    // MARK: Forgetting a device

    public func forgetDevice(_ address: DeviceAddress, record: Data, writer: String, at: Date) async throws -> ForgetCounts {
        let zero = try FleetJSON.makeEncoder().encode(Usage())
        let (site, device) = (address.site.rawValue, address.device.rawValue)
        let logger = self.logger
        return try await client.withTransaction(logger: logger) { c in
            // Counted by the statements themselves (a CTE over RETURNING), in the same transaction.
            func count(_ query: PostgresQuery) async throws -> Int {
                var n: Int64 = 0
                for try await value in try await c.query(query, logger: logger).decode(Int64.self) { n = value }
                return Int(n)
            }
            let events = try await count("WITH d AS (DELETE FROM event WHERE site = \(site) AND device = \(device) RETURNING 1) SELECT count(*) FROM d")
            try await c.query("DELETE FROM event_floor WHERE site = \(site) AND device = \(device)", logger: logger)
            let usage = try await count("WITH u AS (UPDATE usage_device SET last = \(zero) WHERE site = \(site) AND device = \(device) RETURNING 1) SELECT count(*) FROM u")
            let alerts = try await count("""
                WITH a AS (UPDATE alert SET cleared_at = \(at.timeIntervalSince1970) WHERE site = \(site) AND device = \(device) AND cleared_at IS NULL RETURNING 1)
                SELECT count(*) FROM a
                """)
            try await c.query("""
                INSERT INTO device (site, device, json, updated_at, writer) VALUES (\(site), \(device), \(record), \(unescaped: Self.now), \(writer))
                ON CONFLICT (site, device) DO UPDATE SET json = excluded.json, updated_at = excluded.updated_at, writer = excluded.writer
                """, logger: logger)
            return ForgetCounts(events: events, alerts: alerts, usageBaselineReset: usage > 0)
        }
    }

    // MARK: Alerts

    static let alertColumns = "id, site, device, type, severity, message, raised_at, cleared_at, acknowledged_by, acknowledged_at"
    typealias AlertRow = (Int64, String, String?, String, String, String, Double, Double?, String?, Double?)

    static func alert(_ r: AlertRow) -> AlertRecord {
        AlertRecord(id: r.0, site: r.1, device: r.2, type: r.3, severity: Health(rawValue: r.4) ?? .warning, message: r.5,
                    raisedAt: Date(timeIntervalSince1970: r.6), clearedAt: r.7.map(Date.init(timeIntervalSince1970:)),
                    acknowledgedBy: r.8, acknowledgedAt: r.9.map(Date.init(timeIntervalSince1970:)))
    }

    public func insertAlert(site: String, device: String?, type: String, severity: Health, message: String, at: Date) async throws -> Int64 {
        let rows = try await client.query("""
            INSERT INTO alert (site, device, type, severity, message, raised_at)
            VALUES (\(site), \(device), \(type), \(severity.rawValue), \(Self.text(message)), \(at.timeIntervalSince1970))
            RETURNING id
            """, logger: logger)
        guard let id = try await collect(rows.decode(Int64.self)).first else { throw PostgresStoreError(message: "INSERT INTO alert returned no id") }
        return id
    }

    public func clearAlert(id: Int64, at: Date) async throws {
        try await client.query("UPDATE alert SET cleared_at = \(at.timeIntervalSince1970) WHERE id = \(id)", logger: logger)
    }

    public func acknowledgeAlert(id: Int64, by: String, at: Date) async throws -> AlertRecord? {
        let rows = try await client.query("""
            UPDATE alert SET acknowledged_by = \(by), acknowledged_at = \(at.timeIntervalSince1970) WHERE id = \(id) RETURNING \(unescaped: Self.alertColumns)
            """, logger: logger)
        return try await collect(rows.decode(AlertRow.self)).first.map(Self.alert)
    }

    public func alerts(activeOnly: Bool, limit: Int) async throws -> [AlertRecord] {
        let filter = activeOnly ? "WHERE cleared_at IS NULL" : ""
        let rows = try await client.query("SELECT \(unescaped: Self.alertColumns) FROM alert \(unescaped: filter) ORDER BY id DESC LIMIT \(Int64(limit))", logger: logger)
        return try await collect(rows.decode(AlertRow.self)).map(Self.alert)
    }

    // MARK: Commands, rollouts, audit

    public func saveCommand(_ record: CommandRecord) async throws {
        let json = try FleetJSON.encode(record)
        try await client.withConnection { c in try await Self.saveCommand(record, json: json, on: c, logger: self.logger) }
    }

    static func saveCommand(_ record: CommandRecord, json: Data, on c: PostgresConnection, logger: Logger) async throws {
        try await c.query("""
            INSERT INTO command (id, json, finished, created_at) VALUES (\(record.id), \(json), \(record.isFinished), \(record.createdAt.timeIntervalSince1970))
            ON CONFLICT (id) DO UPDATE SET json = excluded.json, finished = excluded.finished WHERE NOT command.finished
            """, logger: logger)
    }

    public func command(id: String) async throws -> CommandRecord? {
        try await decodeAll(CommandRecord.self, client.query("SELECT json FROM command WHERE id = \(id)", logger: logger)).first
    }

    public func unfinishedCommands() async throws -> [CommandRecord] {
        try await decodeAll(CommandRecord.self, client.query("SELECT json FROM command WHERE NOT finished", logger: logger))
    }

    public func recentCommands(limit: Int) async throws -> [CommandRecord] {
        try await decodeAll(CommandRecord.self, client.query("SELECT json FROM command ORDER BY created_at DESC LIMIT \(Int64(limit))", logger: logger))
    }

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

    // MARK: Replicas

    public func acquireLease(_ name: String, holder: String, for seconds: Double) async throws -> Bool {
        let rows = try await client.query("""
            INSERT INTO lease (name, holder, expires_at) VALUES (\(name), \(holder), \(unescaped: Self.now) + \(seconds))
            ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
            WHERE lease.holder = excluded.holder OR lease.expires_at < \(unescaped: Self.now)
            RETURNING holder
            """, logger: logger)
        return try await collect(rows.decode(String.self)).first == holder
    }

    public func releaseLease(_ name: String, holder: String) async throws {
        try await client.query("DELETE FROM lease WHERE name = \(name) AND holder = \(holder)", logger: logger)
    }

    public func devicesChanged(since: Double, excludingWriter writer: String) async throws -> (rows: [Data], newest: Double) {
        let rows = try await collect(client.query("SELECT json, updated_at FROM device WHERE updated_at > \(since) AND writer <> \(writer)", logger: logger)
            .decode((Data, Double).self))
        return (rows.map(\.0), rows.map(\.1).max() ?? since)
    }

    public func rollouts() async throws -> [Rollout] {
        try await decodeAll(Rollout.self, client.query("SELECT json FROM rollout ORDER BY created_at DESC", logger: logger))
    }

    public func audit(_ entry: AuditDraft) async throws {
        try await client.withConnection { c in try await Self.audit(entry, on: c, logger: self.logger) }
    }

    static func audit(_ e: AuditDraft, on c: PostgresConnection, logger: Logger) async throws {
        try await c.query("""
            INSERT INTO audit (at, actor, action, targets, outcome, detail)
            VALUES (\(e.at.timeIntervalSince1970), \(Self.text(e.actor)), \(Self.text(e.action)), \(Self.text(e.targets)), \(Self.text(e.outcome)), \(e.detail.map(Self.text)))
            """, logger: logger)
    }

    public func auditEntries(limit: Int) async throws -> [AuditEntry] {
        try await collect(client.query("SELECT id, at, actor, action, targets, outcome, detail FROM audit ORDER BY id DESC LIMIT \(Int64(limit))", logger: logger)
            .decode((Int64, Double, String, String, String, String, String?).self)).map {
            AuditEntry(id: $0.0, at: Date(timeIntervalSince1970: $0.1), actor: $0.2, action: $0.3, targets: $0.4, outcome: $0.5, detail: $0.6)
        }
    }

    // MARK: Helpers

    func collect<S: AsyncSequence>(_ sequence: S) async throws -> [S.Element] {
        var out: [S.Element] = []
        for try await element in sequence { out.append(element) }
        return out
    }

    /// JSON documents of one column; a row that no longer decodes is skipped, as in SQLiteStore.
    private func decodeAll<T: Decodable>(_ type: T.Type, _ rows: PostgresRowSequence) async throws -> [T] {
        let decoder = FleetJSON.makeDecoder()
        return try await collect(rows.decode(Data.self)).compactMap { try? decoder.decode(T.self, from: $0) }
    }
}

public struct PostgresStoreError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

extension Array {
    /// Consecutive slices of at most `size` elements.
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}

extension PostgresLocation {
    /// postgres-nio's TLS for `sslmode` (nil: `disable`). Never `.prefer`:
    /// a server without TLS is an error, not a quiet downgrade.
    public var tlsConfiguration: TLSConfiguration? {
        var tls = TLSConfiguration.makeClientConfiguration()
        switch sslMode {
        case .disable: return nil
        case .require: tls.certificateVerification = .none
        case .verifyCA: tls.certificateVerification = .noHostnameVerification
        case .verifyFull: tls.certificateVerification = .fullVerification
        }
        if let ca = sslRootCertificate { tls.trustRoots = .file(ca) }
        return tls
    }
}
