import FleetTestSupport
import Foundation
import Testing

// Issue 20, item 5: retention and the disk alert in a running console
// (the built console, a real mosquitto, SQLite or PostgreSQL).
extension ConsoleEndToEndTests {
    @Test("a running console deletes events older than retention.events_days, keeps the recent ones, and counts what it deleted")
    func retentionDeletesOldEvents() async throws {
        try await ConsoleRig.run(console: { $0.settings = ["retention": ["events_days": 1, "interval_s": 1]] }, agents: []) { rig in
            let device = try await CraftedDevice.connect(Fleet.device(Fleet.lab, "keeper"), broker: rig.broker, epoch: 5)
            try await rig.waitForDevice(device.device, "keeper online") { $0["online"]?.bool == true }
            // Five events from two days ago (an outbox replayed late), then two of now.
            let old = FleetProbe.timestamp(Date().addingTimeInterval(-2 * 86_400))
            for _ in 1...5 {
                let message = device.stamped("events", ["type": "fault_cleared", "fault": "overheat"], historical: true).setting("ts", to: .string(old))
                try await device.publishRaw("events", message.bytes)
            }
            for _ in 1...2 { try await device.publish("events", ["type": "fault_cleared", "fault": "overheat"]) }
            let pruned = try await rig.waitForMetrics(timeout: .seconds(30), "the five old events deleted") {
                $0.sum("fleet_retention_deleted_total", ["table": "event"]) >= 5
            }
            #expect(pruned.sum("fleet_retention_deleted_total", ["table": "event"]) == 5)
            #expect(pruned.sum("fleet_events_stored_total") >= 7, "all seven were stored first")
            // Later passes (every second) leave the recent events alone.
            try await device.publish("events", ["type": "fault_cleared", "fault": "overheat"])
            let later = try await rig.waitForMetrics(timeout: .seconds(10), "the eighth event stored") { $0.sum("fleet_events_stored_total") >= 8 }
            #expect(later.sum("fleet_retention_deleted_total", ["table": "event"]) == 5)
            #expect(later.value("fleet_database_size_bytes").map { $0 > 0 } == true, "\(later.lines(of: ["fleet_database_size_bytes"]))")
            await device.close()
        }
    }

    @Test("disk_space is raised, critical, while the database's disk has less free space than health.disk_free_min_mb (SQLite; on PostgreSQL its host watches that disk)")
    func diskSpaceAlert() async throws {
        try await ConsoleRig.run(console: { $0.settings = ["health": ["disk_free_min_mb": 100_000_000]] }, agents: []) { rig in
            guard TestDatabase.current == .sqlite else {
                let metrics = try await rig.waitForMetrics("the disk measured") { $0.value("fleet_database_size_bytes").map { $0 > 0 } ?? false }
                #expect(metrics.value("fleet_database_disk_free_bytes") == -1, "PostgreSQL: the console cannot see the server's disk")
                #expect(try await rig.alerts(active: true).allSatisfy { $0["type"]?.string != "disk_space" })
                return
            }
            let alerts = try await rig.waitFor("/api/v1/alerts?active=true", "disk_space raised") {
                ($0.json?["alerts"]?.array ?? []).contains { $0["type"]?.string == "disk_space" }
            }
            let alert = try #require((alerts.json?["alerts"]?.array ?? []).first { $0["type"]?.string == "disk_space" })
            #expect(alert["severity"]?.string == "critical" && alert["site"]?.string == "_console", "\(alert)")
            #expect(alert["message"]?.string?.contains("MiB free beside the database") == true, "\(alert)")
            let metrics = try await rig.metrics()
            #expect((metrics.value("fleet_database_disk_free_bytes") ?? 0) > 0)
        }
    }
}
