import FleetProtocol
import Foundation
import Logging
import PostgresNIO

/// DeviceRows and UsageStore: the device rows, forgetting a device, usage.
extension PostgresStore {
    public func loadDevices() async throws -> [DeviceRecord] {
        try await decodeAll(DeviceRecord.self, client.query("SELECT json FROM device", logger: logger), from: "device")
    }

    public func devicesChanged(since: Double, excludingWriter writer: String) async throws -> (records: [DeviceRecord], newest: Double) {
        let rows = try await collect(client.query("SELECT json, updated_at FROM device WHERE updated_at > \(since) AND writer <> \(writer)", logger: logger)
            .decode((Data, Double).self))
        return (StoredJSON.decode(DeviceRecord.self, rows.map(\.0), from: "device", logger: logger), rows.map(\.1).max() ?? since)
    }

    // MARK: Usage

    public func loadUsage() async throws -> [StoredUsage] {
        try await collect(client.query("SELECT site, device, last, total FROM usage_device", logger: logger).decode((String, String, Data, Data).self))
            .compactMap { StoredJSON.usage(site: $0.0, device: $0.1, last: $0.2, total: $0.3, logger: logger) }
    }

    public func loadUsageDays() async throws -> [UsageDay] {
        try await decodeAll(UsageDay.self, client.query("SELECT json FROM usage_day", logger: logger), from: "usage_day")
    }

    // MARK: Forgetting a device

    public func forgetDevice(_ address: DeviceAddress, record: DeviceRecord, writer: String, at: Date) async throws -> ForgetCounts {
        let encoder = FleetJSON.makeEncoder()
        let (zero, record) = (try encoder.encode(Usage()), try encoder.encode(record))
        let (site, device) = (address.site.rawValue, address.device.rawValue)
        let logger = self.logger
        return try await client.withTransaction(logger: logger) { c in
            // Counted by the statements themselves (a CTE over RETURNING), in the same transaction.
            func count(_ query: PostgresQuery) async throws -> Int {
                var n: Int64 = 0
                for try await value in try await c.query(query, logger: logger).decode(Int64.self) { n = value }
                return Int(n)
            }
            let events = try await count("WITH d AS (DELETE FROM event WHERE site = \(site) AND device = \(device) RETURNING 1) SELECT count(*) FROM d")
            try await c.query("DELETE FROM event_floor WHERE site = \(site) AND device = \(device)", logger: logger)
            let usage = try await count("WITH u AS (UPDATE usage_device SET last = \(zero) WHERE site = \(site) AND device = \(device) RETURNING 1) SELECT count(*) FROM u")
            let alerts = try await count("""
                WITH a AS (UPDATE alert SET cleared_at = \(at.timeIntervalSince1970) WHERE site = \(site) AND device = \(device) AND cleared_at IS NULL RETURNING 1)
                SELECT count(*) FROM a
                """)
            try await c.query("""
                INSERT INTO device (site, device, json, updated_at, writer) VALUES (\(site), \(device), \(record), \(unescaped: Self.now), \(writer))
                ON CONFLICT (site, device) DO UPDATE SET json = excluded.json, updated_at = excluded.updated_at, writer = excluded.writer
                """, logger: logger)
            return ForgetCounts(events: events, alerts: alerts, usageBaselineReset: usage > 0)
        }
    }
}
