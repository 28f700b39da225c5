import FleetTestSupport
import Foundation
import Testing

// Presence and alerts: a killed agent, its alert, the acknowledgement, the return.
extension ConsoleEndToEndTests {
    @Test("an agent SIGKILLed shows offline with an offline alert within keepalive × 1.5; the alert is acknowledged, and clears when the agent returns")
    func killedAgentRaisesAndClearsOfflineAlert() async throws {
        let keepAlive = 5
        let victim = Fleet.device(Fleet.north, "north-01")
        let n2 = Fleet.device(Fleet.north, "north-02")
        let s1 = Fleet.device(Fleet.south, "south-01")
        try await ConsoleRig.run(
            console: { $0.health.clearAfterSeconds = 1 },
            agents: [victim, n2, s1],
            agent: { _, options in options.keepAliveSeconds = keepAlive }
        ) { rig in
            let before = try await rig.alerts(active: true)
            #expect(before.about(victim).isEmpty, "no alert before: \(before)")
            let agent = try rig.agent(victim)

            // SIGKILL: offline and alerted within keepalive × 1.5.
            let limit = Duration.milliseconds(keepAlive * 1500)
            let clock = ContinuousClock()
            let killedAt = clock.now
            agent.kill()
            let alerted = try await rig.waitFor("/api/v1/alerts?active=true", timeout: limit, "an active offline alert for \(victim)") {
                ($0.json?["alerts"]?.array ?? []).about(victim).contains { $0["type"]?.string == "offline" }
            }
            let summary = try await rig.waitForDevice(victim, timeout: limit, "\(victim) offline") {
                $0["online"]?.bool == false && $0["state"]?.string == "offline"
            }
            let elapsed = clock.now - killedAt
            #expect(elapsed <= limit, "offline and alerted after \(elapsed); keepalive \(keepAlive) s × 1.5 = \(limit)")

            let offlineAlerts = (alerted.json?["alerts"]?.array ?? []).about(victim).filter { $0["type"]?.string == "offline" }
            #expect(offlineAlerts.count == 1, "one alert per (device, type): \(offlineAlerts)")
            let alert = try #require(offlineAlerts.first)
            let alertID = try #require(alert["id"]?.int, "\(alert)")
            #expect(["warning", "critical"].contains(alert["severity"]?.string ?? ""), "\(alert)")
            #expect(alert["message"]?.string?.isEmpty == false, "\(alert)")
            #expect(alert["raised_at"]?.string.flatMap(FleetProbe.date(from:)) != nil, "\(alert)")
            #expect(alert["cleared_at"] == nil || alert["cleared_at"] == .null, "active: \(alert)")
            let device = try #require(summary["device"])
            #expect(device["alerts"]?.array?.contains("offline") == true, "the device lists its alert: \(device)")
            #expect(device["health"]?.string != "ok", "\(device)")
            for other in [n2, s1] {
                let otherSummary = try await rig.summary(other)
                #expect(otherSummary?["online"]?.bool == true && otherSummary?["alerts"]?.array?.isEmpty == true,
                        "\(other) unaffected: \(String(describing: otherSummary))")
            }
            try await rig.waitForMetrics("fleet_alerts_active 1 and fleet_devices{site=clinic-north,state=offline} 1") {
                $0.value("fleet_alerts_active") == 1 && $0.value("fleet_devices", ["site": Fleet.north, "state": "offline"]) == 1
            }

            // Acknowledged by an operator; a viewer may not.
            let byViewer = try await rig.api.post("/api/v1/alerts/\(alertID)/ack", token: rig.tokens.viewer)
            #expect(byViewer.status == 403 && byViewer.hasErrorShape, "\(byViewer)")
            let ack = try await rig.api.post("/api/v1/alerts/\(alertID)/ack", token: rig.tokens.operator)
            #expect(ack.status == 200, "\(ack)")
            #expect(ack["id"]?.int == alertID, "the alert comes back: \(ack)")
            #expect(ack["acknowledged_by"]?.string == "operator", "\(ack)")
            #expect(ack["acknowledged_at"]?.string.flatMap(FleetProbe.date(from:)) != nil, "\(ack)")
            #expect(ack["cleared_at"] == nil || ack["cleared_at"] == .null, "acknowledged is not cleared: \(ack)")

            // The agent returns: the alert clears (after the hysteresis) and stays in the history.
            try await agent.restart(probe: rig.probe)
            try await rig.waitFor("/api/v1/alerts?active=true", timeout: .seconds(15), "no active alert for \(victim)") {
                guard $0.status == 200, let alerts = $0.json?["alerts"]?.array else { return false }
                return alerts.about(victim).isEmpty
            }
            let history = try await rig.alerts(active: false)
            let cleared = try #require(history.first { $0["id"]?.int == alertID }, "the cleared alert in ?active=false: \(history)")
            let raisedAt = try #require(cleared["raised_at"]?.string.flatMap(FleetProbe.date(from:)))
            let clearedAt = try #require(cleared["cleared_at"]?.string.flatMap(FleetProbe.date(from:)), "\(cleared)")
            #expect(clearedAt >= raisedAt, "\(cleared)")
            #expect(cleared["acknowledged_by"]?.string == "operator", "the acknowledgement is kept: \(cleared)")
            let back = try await rig.waitForDevice(victim, "\(victim) back: online, idle, healthy") {
                $0["online"]?.bool == true && $0["state"]?.string == "idle" && $0["health"]?.string == "ok"
                    && $0["alerts"]?.array?.isEmpty == true
            }
            #expect(back["device"]?["epoch"]?.int == agent.epoch, "the new epoch: \(back)")
            try await rig.waitForMetrics("fleet_alerts_active 0 and nothing offline at clinic-north") {
                $0.value("fleet_alerts_active") == 0 && ($0.value("fleet_devices", ["site": Fleet.north, "state": "offline"]) ?? 0) == 0
            }
        }
    }

    @Test("three pain_signal aborts of one program at one site raise one site-wide warning (no device); a token of another site does not see it")
    func repeatedPainSignalsRaiseSiteWarning() async throws {
        try await ConsoleRig.run(console: { $0.health.painSignalCount = 3 }, agents: []) { rig in
            var devices: [CraftedDevice] = []
            for name in ["pain-01", "pain-02"] {
                let device = try await CraftedDevice.connect(Fleet.device(Fleet.lab, name), broker: rig.broker, epoch: 1)
                try await rig.waitForDevice(device.device, "\(name) online") { $0["online"]?.bool == true }
                devices.append(device)
            }
            func painAbort(_ device: CraftedDevice, _ session: String, program: String = "calf-release") async throws {
                let base: WireJSON = ["session_id": .string(session), "program": .string(program), "source": "device"]
                try await device.publish("events", base.setting("type", to: "session_started"))
                try await device.publish(
                    "events", base.setting("type", to: "session_aborted").setting("reason", to: "pain_signal").setting("elapsed_s", to: 40))
            }
            // Two pain aborts of calf-release and one of another program: no warning yet.
            try await painAbort(devices[0], "s-1-0001")
            try await painAbort(devices[1], "s-1-0001")
            try await painAbort(devices[0], "s-1-0002", program: "sole-vitality")
            try await rig.waitFor("/api/v1/devices/\(Fleet.lab)/pain-01", "pain-01's sessions stored") {
                ($0.json?["recent_sessions"]?.array ?? []).filter { $0["reason"]?.string == "pain_signal" }.count == 2
            }
            try await rig.barrier()
            let early = try await rig.alerts(active: true)
            let earlyPain = early.filter { $0["type"]?.string == "pain_signals" }
            #expect(earlyPain.isEmpty, "two of one program are not three: \(early)")

            // The third of calf-release at the site.
            try await painAbort(devices[1], "s-1-0002")
            let response = try await rig.waitFor("/api/v1/alerts?active=true", timeout: .seconds(15), "a pain_signals alert at the lab") {
                ($0.json?["alerts"]?.array ?? []).contains { $0["type"]?.string == "pain_signals" }
            }
            let pain = (response.json?["alerts"]?.array ?? []).filter { $0["type"]?.string == "pain_signals" }
            #expect(pain.count == 1, "one site-wide alert: \(pain)")
            let alert = try #require(pain.first)
            #expect(alert["site"]?.string == Fleet.lab, "\(alert)")
            #expect(alert["device"] == nil || alert["device"] == .null, "site-wide: device null: \(alert)")
            #expect(alert["severity"]?.string == "warning", "\(alert)")
            #expect(alert["message"]?.string?.contains("calf-release") == true, "the message names the program: \(alert)")
            let scoped = try await rig.alerts(active: true, token: rig.tokens.siteViewer)
            let scopedPain = scoped.filter { $0["type"]?.string == "pain_signals" }
            #expect(scopedPain.isEmpty, "clinic-north's viewer does not see the lab's alert: \(scoped)")
            for device in devices { await device.close() }
        }
    }
}
