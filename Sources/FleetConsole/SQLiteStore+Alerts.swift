import FleetProtocol
import Foundation
import GRDB

/// AlertStore.
extension SQLiteStore {
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
}
