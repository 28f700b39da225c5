import FleetProtocol
import Foundation
import GRDB

/// CommandStore and AuditLog.
extension SQLiteStore {
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
}
