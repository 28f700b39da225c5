import FleetProtocol
import Foundation
import GRDB

/// DeviceRows and UsageStore: the device rows, forgetting a device, usage.
extension SQLiteStore {
    public func loadDevices() async throws -> [DeviceRecord] {
        let rows = try await pool.read { db in try Data.fetchAll(db, sql: "SELECT json FROM device") }
        return StoredJSON.decode(DeviceRecord.self, rows, from: "device", logger: logger)
    }

    public func devicesChanged(since: Double, excludingWriter writer: String) async throws -> (records: [DeviceRecord], newest: Double) {
        let (rows, newest) = try await pool.read { db in
            var newest = since
            var rows: [Data] = []
            for row in try Row.fetchAll(db, sql: "SELECT json, updated_at FROM device WHERE updated_at > ? AND writer <> ?", arguments: [since, writer]) {
                rows.append(row["json"])
                newest = max(newest, row["updated_at"])
            }
            return (rows, newest)
        }
        return (StoredJSON.decode(DeviceRecord.self, rows, from: "device", logger: logger), newest)
    }

    // MARK: Usage

    public func loadUsage() async throws -> [StoredUsage] {
        let rows = try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT site, device, last, total FROM usage_device").map { row -> (String, String, Data, Data) in
                (row["site"], row["device"], row["last"], row["total"])
            }
        }
        return rows.compactMap { StoredJSON.usage(site: $0.0, device: $0.1, last: $0.2, total: $0.3, logger: logger) }
    }

    public func loadUsageDays() async throws -> [UsageDay] {
        let rows = try await pool.read { db in try Data.fetchAll(db, sql: "SELECT json FROM usage_day") }
        return StoredJSON.decode(UsageDay.self, rows, from: "usage_day", logger: logger)
    }

    // MARK: Forgetting a device

    public func forgetDevice(_ address: DeviceAddress, record: DeviceRecord, writer: String, at: Date) async throws -> ForgetCounts {
        let encoder = FleetJSON.makeEncoder()
        let (zero, record) = (try encoder.encode(Usage()), try encoder.encode(record))
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
