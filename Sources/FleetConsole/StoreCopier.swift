import Foundation
import GRDB
import Logging
import NIOSSL
import PostgresNIO

/// Moves a console's SQLite database into an empty PostgreSQL database
/// (`fleet-console migrate-db`), with every row accounted for.
///
/// The SQLite file is opened with ``SQLiteStore`` (which brings it to the
/// current schema) and read from one snapshot; the destination is opened
/// with ``PostgresStore`` (which creates the schema). Every table of the
/// console schema is copied except migration bookkeeping and `lease`
/// (replica coordination, meaningless on another database). Columns are
/// discovered, not listed: a table's columns come from SQLite's
/// `PRAGMA table_info`, their PostgreSQL types from
/// `information_schema.columns`, so a migration that adds columns needs no
/// change here.
///
/// All of it is one PostgreSQL transaction: the destination tables are
/// locked and must be empty, rows go in primary-key order in multi-row
/// INSERTs keeping their ids, `bigserial` sequences are moved past the
/// copied ids, and both sides are counted before the commit. Any failure
/// rolls everything back.
public struct StoreCopier: Sendable {
    /// Where a table's copy stands.
    public struct Progress: Sendable, Equatable {
        public var table: String
        public var copied: Int
        public var total: Int
    }

    /// A copied table's rows on each side (equal after a successful copy).
    public struct TableCount: Sendable, Codable, Equatable {
        public var table: String
        public var sqlite: Int
        public var postgres: Int
        public init(table: String, sqlite: Int, postgres: Int) {
            (self.table, self.sqlite, self.postgres) = (table, sqlite, postgres)
        }
    }

    /// Tables never copied: each store's migration bookkeeping, and the
    /// replicas' leases.
    public static let skippedTables: Set<String> = ["grdb_migrations", "console_migrations", "lease"]
    /// The console's tables in the order they are copied; any other table
    /// found in the SQLite file follows, by name.
    public static let tableOrder = ["device", "event", "event_floor", "session", "usage_device", "usage_day", "alert", "command", "audit", "rollout"]
    /// Rows per INSERT, fewer for wide tables: a statement has at most
    /// 65,535 parameters.
    public static let rowsPerStatement = 1000
    static let maximumParameters = 65_535

    public var source: String
    public var destination: PostgresLocation
    /// How long to wait for the destination tables' locks (a console still
    /// running on the destination holds them) before giving up.
    public var lockTimeoutSeconds: Int = 10

    public init(from source: String, to destination: PostgresLocation) {
        self.source = source
        self.destination = destination
    }

    /// Copies everything; returns each table's rows on both sides.
    /// `progress` is called as each table starts and after each statement.
    public func run(logger: Logger, progress: @escaping @Sendable (Progress) -> Void = { _ in }) async throws -> [TableCount] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: source, isDirectory: &isDirectory) else {
            throw StoreCopyError(.sourceMissing, "\(source) does not exist: expected the console's SQLite database file (its `database` setting)")
        }
        guard !isDirectory.boolValue else {
            throw StoreCopyError(.sourceMissing, "\(source) is a directory: expected the console's SQLite database file (its `database` setting)")
        }
        let sqlite: SQLiteStore
        do { sqlite = try SQLiteStore(path: source) } catch {
            throw StoreCopyError(.sourceUnreadable, "cannot open \(source) as a console SQLite database: \(Self.describe(error))")
        }
        defer { try? sqlite.pool.close() }
        let snapshot: DatabaseSnapshot
        let tables: [SourceTable]
        do {
            // One unchanging view of the file for the whole copy.
            snapshot = try sqlite.pool.makeSnapshot()
            tables = try await snapshot.read { db in try Self.sourceTables(db) }
        } catch {
            throw StoreCopyError(.sourceUnreadable, "cannot read \(source): \(Self.describe(error))")
        }
        defer { try? snapshot.close() }

        // One connection first: a wrong host, port, user, password or
        // database name is reported at once, not after the pool's retries.
        try await Self.probe(destination, logger: logger)
        let postgres: PostgresStore
        do { postgres = try await PostgresStore(location: destination, logger: logger) } catch {
            throw StoreCopyError(.destinationUnusable, Self.describe(error))
        }
        do {
            let counts = try await copy(tables, from: snapshot, to: postgres.client, logger: logger, progress: progress)
            await postgres.close()
            return counts
        } catch {
            await postgres.close()
            throw error
        }
    }

    static func probe(_ location: PostgresLocation, logger: Logger) async throws {
        do {
            let tls: PostgresConnection.Configuration.TLS = try location.tlsConfiguration.map { .require(try NIOSSLContext(configuration: $0)) } ?? .disable
            var configuration = PostgresConnection.Configuration(host: location.host, port: location.port, username: location.user,
                                                                 password: location.password, database: location.database, tls: tls)
            configuration.options.connectTimeout = .seconds(10)
            let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
            try? await connection.close()
        } catch {
            throw StoreCopyError(.destinationUnusable, "cannot connect to \(location.redacted): \(describe(error))")
        }
    }

    // MARK: The copy

    private func copy(_ tables: [SourceTable], from snapshot: DatabaseSnapshot, to client: PostgresClient, logger: Logger,
                      progress: @escaping @Sendable (Progress) -> Void) async throws -> [TableCount] {
        let destination = self.destination
        let plans: [TablePlan]
        do {
            plans = try await Self.plans(for: tables, client: client, logger: logger)
        } catch let error as StoreCopyError {
            throw error
        } catch {
            throw StoreCopyError(.destinationUnusable, "cannot read the schema of \(destination.redacted): \(Self.describe(error))")
        }
        let lockTimeout = lockTimeoutSeconds
        do {
            return try await client.withTransaction(logger: logger) { c in
                try await c.query(PostgresQuery(unsafeSQL: "SET LOCAL lock_timeout = '\(lockTimeout)s'"), logger: logger)
                let names = plans.map { Self.quote($0.name) }.joined(separator: ", ")
                do {
                    try await c.query(PostgresQuery(unsafeSQL: "LOCK TABLE \(names) IN EXCLUSIVE MODE"), logger: logger)
                } catch let error as PSQLError where error.serverInfo?[.sqlState] == "55P03" {
                    throw StoreCopyError(.destinationBusy, "the tables of \(destination.redacted) are in use (no lock within \(lockTimeout) s): stop every console using that database and run migrate-db again")
                }
                let occupied = try await Self.counts(plans.map(\.name), on: c, logger: logger).filter { $0.count > 0 }
                if !occupied.isEmpty {
                    let list = occupied.map { "\($0.table) has \($0.count) row\($0.count == 1 ? "" : "s")" }.joined(separator: ", ")
                    throw StoreCopyError(.destinationNotEmpty, "\(destination.redacted) is not empty (\(list)); nothing was written: migrate into a new, empty database")
                }
                for plan in plans {
                    try await Self.copy(plan, from: snapshot, on: c, logger: logger, progress: progress)
                }
                for plan in plans {
                    for column in plan.serialColumns {
                        // The next id follows the copied ones (1 for an empty table).
                        try await c.query(PostgresQuery(unsafeSQL: """
                            SELECT setval(pg_get_serial_sequence('\(Self.quote(plan.name).replacingOccurrences(of: "'", with: "''"))', '\(column.replacingOccurrences(of: "'", with: "''"))'),
                              coalesce((SELECT max(\(Self.quote(column))) FROM \(Self.quote(plan.name))), 0) + 1, false)
                            """), logger: logger)
                    }
                }
                let copied = Dictionary(uniqueKeysWithValues: try await Self.counts(plans.map(\.name), on: c, logger: logger).map { ($0.table, $0.count) })
                let result = plans.map { TableCount(table: $0.name, sqlite: $0.rows, postgres: copied[$0.name] ?? -1) }
                let wrong = result.filter { $0.sqlite != $0.postgres }
                if !wrong.isEmpty {
                    let list = wrong.map { "\($0.table): \($0.sqlite) in SQLite, \($0.postgres) in PostgreSQL" }.joined(separator: "; ")
                    throw StoreCopyError(.countMismatch, "row counts differ after the copy (\(list)); rolled back, nothing was written")
                }
                return result
            }
        } catch let error as PostgresTransactionError {
            if let inner = error.closureError as? StoreCopyError { throw inner }
            if let inner = error.closureError {
                throw StoreCopyError(.copyFailed, "copy into \(destination.redacted) failed, rolled back, nothing was written: \(Self.describe(inner))")
            }
            if let commit = error.commitError {
                throw StoreCopyError(.copyFailed, "the commit into \(destination.redacted) failed, nothing was written: \(Self.describe(commit))")
            }
            throw StoreCopyError(.destinationUnusable, "cannot start a transaction on \(destination.redacted): \(Self.describe(error.beginError ?? error))")
        } catch let error as StoreCopyError {
            throw error
        } catch {
            throw StoreCopyError(.copyFailed, "copy into \(destination.redacted) failed: \(Self.describe(error))")
        }
    }

    /// Copies one table in key order, a statement per chunk. The next chunk
    /// is read from SQLite while the current one is written.
    private static func copy(_ plan: TablePlan, from snapshot: DatabaseSnapshot, on c: PostgresConnection, logger: Logger,
                             progress: @escaping @Sendable (Progress) -> Void) async throws {
        progress(Progress(table: plan.name, copied: 0, total: plan.rows))
        guard plan.rows > 0 else { return }
        let fullStatement = plan.insert(rows: plan.rowsPerStatement)
        var copied = 0
        var chunk = try await snapshot.read { db in try plan.read(db, after: nil) }
        while chunk.rows > 0 {
            let last = chunk.lastKey
            let full = chunk.rows == plan.rowsPerStatement
            // A short chunk was the table's end.
            async let following = full ? snapshot.read { db in try plan.read(db, after: last) } : Chunk.empty
            let sql = full ? fullStatement : plan.insert(rows: chunk.rows)
            try await c.query(PostgresQuery(unsafeSQL: sql, binds: chunk.binds), logger: logger)
            copied += chunk.rows
            progress(Progress(table: plan.name, copied: copied, total: plan.rows))
            chunk = try await following
        }
    }

    // MARK: Helpers

    /// A double-quoted SQL identifier.
    static func quote(_ identifier: String) -> String {
        "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// The useful part of a database error (PSQLError's description hides the server's message).
    static func describe(_ error: any Error) -> String {
        if let error = error as? StoreCopyError { return error.message }
        if let error = error as? PostgresTransactionError {
            return describe(error.closureError ?? error.commitError ?? error.beginError ?? error.rollbackError ?? PostgresStoreError(message: "transaction failed"))
        }
        if let error = error as? PSQLError {
            if let info = error.serverInfo {
                var text = info[.message] ?? "server error"
                if let detail = info[.detail] { text += " (\(detail))" }
                if let state = info[.sqlState] { text += " [SQLSTATE \(state)]" }
                return text
            }
            return String(reflecting: error)
        }
        if let error = error as? DatabaseError { return error.description }
        return String(describing: error)
    }
}

/// Why `migrate-db` stopped. Nothing was written to PostgreSQL whatever the
/// reason (the copy is one transaction), except the schema of a database
/// that had none.
public struct StoreCopyError: Error, CustomStringConvertible, Equatable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let value: String
        private init(_ value: String) { self.value = value }
        /// The SQLite file does not exist.
        public static let sourceMissing = Code("source_missing")
        /// The SQLite file cannot be opened or read.
        public static let sourceUnreadable = Code("source_unreadable")
        /// PostgreSQL cannot be reached, opened or read.
        public static let destinationUnusable = Code("destination_unusable")
        /// A destination table is in use by another client.
        public static let destinationBusy = Code("destination_busy")
        /// A destination table already has rows.
        public static let destinationNotEmpty = Code("destination_not_empty")
        /// The two schemas differ.
        public static let schemaMismatch = Code("schema_mismatch")
        /// A stored value has no PostgreSQL equivalent in its column's type.
        public static let unconvertibleValue = Code("unconvertible_value")
        /// The counts differ after the copy.
        public static let countMismatch = Code("count_mismatch")
        /// PostgreSQL refused a statement during the copy.
        public static let copyFailed = Code("copy_failed")
        public var description: String { value }
    }

    public let code: Code
    public let message: String
    public var description: String { message }

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
}
