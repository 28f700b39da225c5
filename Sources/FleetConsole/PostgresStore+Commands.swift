import FleetProtocol
import Foundation
import Logging
import PostgresNIO

/// CommandStore and AuditLog.
extension PostgresStore {
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
        try await decodeAll(CommandRecord.self, client.query("SELECT json FROM command WHERE id = \(id)", logger: logger), from: "command").first
    }

    public func unfinishedCommands() async throws -> [CommandRecord] {
        try await decodeAll(CommandRecord.self, client.query("SELECT json FROM command WHERE NOT finished", logger: logger), from: "command")
    }

    public func recentCommands(limit: Int) async throws -> [CommandRecord] {
        try await decodeAll(CommandRecord.self, client.query("SELECT json FROM command ORDER BY created_at DESC LIMIT \(Int64(limit))", logger: logger), from: "command")
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
}
