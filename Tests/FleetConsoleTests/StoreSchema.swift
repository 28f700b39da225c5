@testable import FleetConsole
import Foundation
import PostgresNIO

/// A store's schema as comparable facts, one line each — its migrations,
/// tables, columns (normalized type and nullability), primary keys, unique
/// constraints and indexes (with their predicate, if partial) — read from
/// SQLite's catalog and from PostgreSQL's, so a test can tell the two
/// migration lists apart line by line.
enum StoreSchema {
    /// Types by what they hold: SQLite's declared types and PostgreSQL's
    /// `data_type` meet here.
    static func type(_ declared: String) -> String {
        let t = declared.lowercased()
        switch t {
        case "integer", "bigint", "smallint", "int", "int8": return "integer"
        case "text", "character varying", "varchar": return "text"
        case "blob", "bytea": return "bytes"
        case "double", "double precision", "real", "float": return "real"
        case "boolean": return "boolean"
        default: return "other(\(t))"
        }
    }

    /// A partial index's predicate without PostgreSQL's casts and parentheses.
    static func predicate(_ text: String) -> String {
        text.lowercased().replacingOccurrences(of: "::text", with: "").replacingOccurrences(of: "(", with: "").replacingOccurrences(of: ")", with: "")
            .split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    static func column(_ table: String, _ name: String, type declared: String, nullable: Bool) -> String {
        "column \(table).\(name): \(type(declared)), \(nullable ? "null" : "not null")"
    }

    static func index(_ table: String, _ name: String, columns: [String], unique: Bool, predicate where: String?) -> String {
        "\(unique ? "unique index" : "index") \(name) on \(table)(\(columns.joined(separator: ", ")))" + (`where`.map { " where \(predicate($0))" } ?? "")
    }

    static func facts(_ store: SQLiteStore) async throws -> Set<String> {
        try await store.pool.read { db in
            var facts = Set(try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations").map { "migration \($0)" })
            let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' AND name <> 'grdb_migrations'")
            for table in tables {
                facts.insert("table \(table)")
                var key: [(Int, String)] = []
                for info in try String.fetchAll(db, sql: #"SELECT name || '|' || type || '|' || "notnull" || '|' || pk FROM pragma_table_info(?)"#, arguments: [table]) {
                    let f = info.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
                    let pk = Int(f[3]) ?? 0
                    // A primary key column is NOT NULL on PostgreSQL whatever its declaration.
                    facts.insert(column(table, f[0], type: f[1], nullable: f[2] == "0" && pk == 0))
                    if pk > 0 { key.append((pk, f[0])) }
                }
                if !key.isEmpty { facts.insert("primary key \(table)(\(key.sorted { $0.0 < $1.0 }.map(\.1).joined(separator: ", ")))") }
                for entry in try String.fetchAll(db, sql: #"SELECT name || '|' || "unique" || '|' || origin || '|' || partial FROM pragma_index_list(?)"#, arguments: [table]) {
                    let f = entry.split(separator: "|").map(String.init)
                    let columns = try String.fetchAll(db, sql: "SELECT name FROM pragma_index_info(?) ORDER BY seqno", arguments: [f[0]])
                    switch f[2] {
                    case "pk": continue
                    case "u": facts.insert("unique \(table)(\(columns.joined(separator: ", ")))")
                    default:
                        var condition: String?
                        if f[3] == "1", let sql = try String.fetchOne(db, sql: "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", arguments: [f[0]]),
                           let at = sql.range(of: " WHERE ", options: .caseInsensitive) {
                            condition = String(sql[at.upperBound...])
                        }
                        facts.insert(index(table, f[0], columns: columns, unique: f[1] == "1", predicate: condition))
                    }
                }
            }
            return facts
        }
    }

    static func facts(_ store: PostgresStore) async throws -> Set<String> {
        func query(_ sql: String) async throws -> PostgresRowSequence {
            try await store.client.query(PostgresQuery(unsafeSQL: sql), logger: store.logger)
        }
        var facts = Set(try await store.collect(query("SELECT identifier FROM console_migrations").decode(String.self)).map { "migration \($0)" })
        for table in try await store.collect(query("""
            SELECT table_name::text FROM information_schema.tables
            WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name <> 'console_migrations'
            """).decode(String.self)) {
            facts.insert("table \(table)")
        }
        for (table, name, type, nullable) in try await store.collect(query("""
            SELECT table_name::text, column_name::text, data_type::text, is_nullable::text FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name <> 'console_migrations'
            """).decode((String, String, String, String).self)) {
            facts.insert(column(table, name, type: type, nullable: nullable == "YES"))
        }
        // Each constraint's columns in key order.
        for (table, kind, columns) in try await store.collect(query("""
            SELECT t.relname::text, c.contype::text, array_to_string(array(
              SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o), ', ')
            FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace ns ON ns.oid = t.relnamespace
            WHERE ns.nspname = current_schema() AND c.contype IN ('p', 'u') AND t.relname <> 'console_migrations'
            """).decode((String, String, String).self)) {
            facts.insert("\(kind == "p" ? "primary key" : "unique") \(table)(\(columns))")
        }
        // Indexes other than those behind a key or unique constraint.
        for (table, name, unique, condition, columns) in try await store.collect(query("""
            SELECT t.relname::text, i.relname::text, x.indisunique, coalesce(pg_get_expr(x.indpred, x.indrelid), '')::text, array_to_string(array(
              SELECT a.attname::text FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n ORDER BY k.o), ',')
            FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace ns ON ns.oid = t.relnamespace
            WHERE ns.nspname = current_schema() AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
            """).decode((String, String, Bool, String, String).self)) {
            facts.insert(index(table, name, columns: columns.split(separator: ",").map(String.init), unique: unique, predicate: condition.isEmpty ? nil : condition))
        }
        return facts
    }
}
