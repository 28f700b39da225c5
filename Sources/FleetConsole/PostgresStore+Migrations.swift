import FleetProtocol
import Foundation
import Logging
import PostgresNIO

extension PostgresStore {
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
}
