import Foundation
import GRDB
import PostgresNIO

/// The tables a copy moves: what the SQLite file holds, what PostgreSQL
/// expects, and how each value crosses.
extension StoreCopier {
    // MARK: Schema

    /// A table as found in the SQLite file.
    struct SourceTable: Sendable {
        var name: String
        var columns: [String]
        /// The primary key's columns in key order (`rowid` when none is declared).
        var key: [String]
        var rows: Int
    }

    static func sourceTables(_ db: Database) throws -> [SourceTable] {
        let names = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
            .filter { !skippedTables.contains($0) }
        let ordered = tableOrder.filter(names.contains) + names.filter { !tableOrder.contains($0) }.sorted()
        return try ordered.map { name in
            let info = try Row.fetchAll(db, sql: "PRAGMA table_info(\(quote(name)))")
            let columns: [String] = info.map { $0["name"] }
            let key = info.compactMap { row -> (Int, String)? in
                let position: Int = row["pk"]
                return position > 0 ? (position, row["name"]) : nil
            }.sorted { $0.0 < $1.0 }.map(\.1)
            let rows = try Int.fetchOne(db, sql: "SELECT count(*) FROM \(quote(name))") ?? 0
            return SourceTable(name: name, columns: columns, key: key.isEmpty ? ["rowid"] : key, rows: rows)
        }
    }

    /// What each SQLite column becomes in PostgreSQL.
    enum TargetKind: Sendable {
        case boolean, integer, real, text, bytea
        /// Any other type: sent as text and cast by the server.
        case other(String)

        init(dataType: String, udtName: String) {
            switch dataType {
            case "boolean": self = .boolean
            case "bigint", "integer", "smallint": self = .integer
            case "double precision", "real", "numeric": self = .real
            case "text", "character varying", "character": self = .text
            case "bytea": self = .bytea
            default: self = .other(udtName)
            }
        }
    }

    /// One table's copy: its columns with their PostgreSQL types, and the
    /// statements that read and write them.
    struct TablePlan: Sendable {
        var name: String
        var columns: [(name: String, kind: TargetKind, cast: String)]
        var key: [String]
        var rows: Int
        var rowsPerStatement: Int
        var serialColumns: [String]
        var overridingSystemValue: Bool

        /// `INSERT INTO "t" ("a", "b") VALUES ($1::int8, $2::text), …`: the
        /// casts give every parameter a type, NULLs included.
        func insert(rows count: Int) -> String {
            var sql = "INSERT INTO \(quote(name)) (\(columns.map { quote($0.name) }.joined(separator: ", ")))"
            if overridingSystemValue { sql += " OVERRIDING SYSTEM VALUE" }
            sql += " VALUES "
            sql.reserveCapacity(sql.utf8.count + count * columns.count * 14)
            var n = 0
            for row in 0..<count {
                sql += row == 0 ? "(" : ", ("
                for (i, column) in columns.enumerated() {
                    n += 1
                    sql += i == 0 ? "$\(n)::\(column.cast)" : ", $\(n)::\(column.cast)"
                }
                sql += ")"
            }
            return sql
        }

        /// The next rows after `lastKey` in key order, already converted and bound.
        func read(_ db: Database, after lastKey: [DatabaseValue]?) throws -> Chunk {
            let keyList = key.map(quote).joined(separator: ", ")
            let selected = (columns.map { quote($0.name) } + key.map(quote)).joined(separator: ", ")
            var sql = "SELECT \(selected) FROM \(quote(name))"
            var arguments = StatementArguments()
            if let lastKey {
                sql += key.count == 1 ? " WHERE \(keyList) > ?" : " WHERE (\(keyList)) > (\(key.map { _ in "?" }.joined(separator: ", ")))"
                arguments = StatementArguments(lastKey)
            }
            sql += " ORDER BY \(keyList) LIMIT \(rowsPerStatement)"
            var binds = PostgresBindings(capacity: rowsPerStatement * columns.count)
            var rows = 0
            var last: [DatabaseValue] = []
            let cursor = try Row.fetchCursor(db, sql: sql, arguments: arguments)
            while let row = try cursor.next() {
                for (i, column) in columns.enumerated() {
                    do {
                        try StoreCopier.bind(row[i] as DatabaseValue, as: column.kind, into: &binds)
                    } catch let error as StoreCopyError {
                        let at = key.enumerated().map { "\($0.element) \(row[columns.count + $0.offset] as DatabaseValue)" }.joined(separator: ", ")
                        throw StoreCopyError(error.code, "\(name).\(column.name) of the row with \(at): \(error.message); rolled back, nothing was written")
                    }
                }
                last = (columns.count..<(columns.count + key.count)).map { row[$0] as DatabaseValue }
                rows += 1
            }
            return Chunk(binds: binds, rows: rows, lastKey: last)
        }
    }

    struct Chunk: Sendable {
        var binds: PostgresBindings
        var rows: Int
        var lastKey: [DatabaseValue]
        static let empty = Chunk(binds: PostgresBindings(), rows: 0, lastKey: [])
    }

    /// Matches the SQLite tables with the destination's columns.
    static func plans(for tables: [SourceTable], client: PostgresClient, logger: Logger) async throws -> [TablePlan] {
        struct Column { var type: String, udt: String, serial: Bool, always: Bool }
        var schema: [String: [String: Column]] = [:]
        let rows = try await client.query("""
            SELECT table_name::text, column_name::text, data_type::text, udt_name::text, coalesce(column_default, '')::text,
              is_identity::text, coalesce(identity_generation, '')::text
            FROM information_schema.columns WHERE table_schema = current_schema()
            """, logger: logger)
        for try await (table, column, type, udt, defaultValue, identity, generation) in rows.decode((String, String, String, String, String, String, String).self) {
            schema[table, default: [:]][column] = Column(type: type, udt: udt, serial: defaultValue.hasPrefix("nextval(") || identity == "YES",
                                                         always: generation == "ALWAYS")
        }
        return try tables.map { table in
            guard let destination = schema[table.name] else {
                throw StoreCopyError(.schemaMismatch, "table \(table.name) of the SQLite file has no counterpart in PostgreSQL: the two stores' schemas differ")
            }
            let columns = try table.columns.map { name in
                guard let column = destination[name] else {
                    throw StoreCopyError(.schemaMismatch, "column \(table.name).\(name) of the SQLite file has no counterpart in PostgreSQL: the two stores' schemas differ")
                }
                return (name: name, kind: TargetKind(dataType: column.type, udtName: column.udt), cast: quote(column.udt))
            }
            let perStatement = max(1, min(rowsPerStatement, maximumParameters / max(1, columns.count)))
            let serial = table.columns.filter { destination[$0]?.serial == true }
            return TablePlan(name: table.name, columns: columns, key: table.key, rows: table.rows, rowsPerStatement: perStatement,
                             serialColumns: serial, overridingSystemValue: table.columns.contains { destination[$0]?.always == true })
        }
    }

    static func counts(_ tables: [String], on c: PostgresConnection, logger: Logger) async throws -> [(table: String, count: Int)] {
        guard !tables.isEmpty else { return [] }
        let sql = tables.enumerated().map { "SELECT \($0.offset)::int8, count(*)::int8 FROM \(quote($0.element))" }.joined(separator: " UNION ALL ")
        var out = [(table: String, count: Int)](repeating: ("", 0), count: tables.count)
        for try await (index, count) in try await c.query(PostgresQuery(unsafeSQL: sql), logger: logger).decode((Int64, Int64).self) {
            out[Int(index)] = (tables[Int(index)], Int(count))
        }
        return out
    }

    // MARK: Values

    /// Binds one SQLite value as the PostgreSQL column wants it: integers
    /// 0/1 as booleans, blobs as bytea, integers as bigint, reals as double
    /// precision, text as text, NULL as NULL.
    static func bind(_ value: DatabaseValue, as kind: TargetKind, into binds: inout PostgresBindings) throws {
        func refuse(_ what: String) -> StoreCopyError {
            StoreCopyError(.unconvertibleValue, "cannot store \(what) in a PostgreSQL \(kind.name) column")
        }
        switch (value.storage, kind) {
        case (.null, _):
            binds.appendNull()
        case (.int64(let i), .boolean):
            guard i == 0 || i == 1 else { throw refuse("the integer \(i)") }
            binds.append(i == 1)
        case (.int64(let i), .integer):
            binds.append(i)
        case (.int64(let i), .real):
            binds.append(Double(i))
        case (.int64(let i), .text), (.int64(let i), .other):
            binds.append(String(i))
        case (.double(let d), .integer):
            guard let i = Int64(exactly: d) else { throw refuse("the real \(d)") }
            binds.append(i)
        case (.double(let d), .real):
            binds.append(d)
        case (.double(let d), .text), (.double(let d), .other):
            binds.append(String(d))
        case (.string(let s), .text), (.string(let s), .other):
            binds.append(s)
        case (.string(let s), .bytea):
            try binds.append(Data(s.utf8))
        case (.string(let s), .integer):
            guard let i = Int64(s) else { throw refuse("the text \"\(s.prefix(40))\"") }
            binds.append(i)
        case (.string(let s), .real):
            guard let d = Double(s) else { throw refuse("the text \"\(s.prefix(40))\"") }
            binds.append(d)
        case (.blob(let data), .bytea):
            try binds.append(data)
        case (.blob(let data), .text):
            guard let s = String(data: data, encoding: .utf8) else { throw refuse("a \(data.count)-byte blob that is not UTF-8") }
            binds.append(s)
        case (.double(let d), .boolean):
            throw refuse("the real \(d)")
        case (.string(let s), .boolean):
            throw refuse("the text \"\(s.prefix(40))\"")
        case (.blob(let data), _):
            throw refuse("a \(data.count)-byte blob")
        case (.double(let d), .bytea):
            throw refuse("the real \(d)")
        case (.int64(let i), .bytea):
            throw refuse("the integer \(i)")
        }
    }
}

extension StoreCopier.TargetKind {
    var name: String {
        switch self {
        case .boolean: return "boolean"
        case .integer: return "integer"
        case .real: return "floating-point"
        case .text: return "text"
        case .bytea: return "bytea"
        case .other(let type): return type
        }
    }
}
