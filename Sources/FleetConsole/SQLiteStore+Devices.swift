import FleetProtocol
import Foundation
import GRDB

/// The device rows, forgetting a device, usage.
extension SQLiteStore {
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
}
