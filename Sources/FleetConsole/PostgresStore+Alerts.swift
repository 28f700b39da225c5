import FleetProtocol
import Foundation
import Logging
import PostgresNIO

/// AlertStore.
extension PostgresStore {
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
}
