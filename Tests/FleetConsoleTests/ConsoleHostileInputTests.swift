import FleetTestSupport
import Foundation
import Mosquitto
import Synchronization
import Testing

// Issue 20 (items 1, 2, 4, 16, 19): what a device sends cannot crash or
// stall the console, poison its metrics, or keep an alert up forever; and a
// lost last event of an epoch is asked for. Devices are crafted (every byte
// the test's), against the built console, a real mosquitto and SQLite.
extension ConsoleEndToEndTests {
    @Test("numbers past the protocol's bounds are refused and counted, never trap the console — also when they are the retained messages it reads again after a restart")
    func outOfRangeNumbersNeverTrap() async throws {
        try await ConsoleRig.run(agents: []) { rig in
            let device = try await CraftedDevice.connect(Fleet.device(Fleet.lab, "huge-01"), broker: rig.broker, epoch: 3)
            try await rig.waitForDevice(device.device, "huge-01 online") { $0["online"]?.bool == true }
            let malformedBefore = try await rig.metrics().sum("fleet_ingest_malformed_total")
            func usage(started: String, dropped: String = "0") -> WireJSON {
                ["sessions": ["started": number(started), "completed": 0, "aborted": [:]],
                 "seconds": ["by_zone": [:], "by_point": [:], "by_technique": [:], "by_program": [:]], "outbox_dropped": number(dropped)]
            }
            let idle: WireJSON = ["session_state": "idle", "pressure_mmhg": [:], "motor_temp_c": 30, "faults": [], "interval_s": 1]
            // Before the bounds: usage at UInt64.max was taken, and the next (a "reset" to 1)
            // added 1 to it — an overflow trap; telemetry at seq UInt64.max trapped the next
            // one's `last + 1`. Each is now refused at decoding.
            try await device.publishNumbers("usage", usage(started: "2"), seq: "1")
            try await device.publishNumbers("usage", usage(started: "18446744073709551615"), seq: "2")
            try await device.publishNumbers("usage", usage(started: "1", dropped: "9007199254740993"), seq: "3")
            try await device.publishNumbers("telemetry", idle, seq: "18446744073709551615")
            try await device.publishNumbers("telemetry", idle, seq: "5")
            try await device.publishNumbers("telemetry", idle.setting("motor_temp_c", to: number("1e308")), seq: "6")
            try await device.publishNumbers(
                "telemetry",
                idle.setting("session_state", to: "running").setting("session_id", to: "s-3-1")
                    .setting("step", to: ["index": number("9223372036854775807"), "target": "calf", "zone": "calf", "technique": "kneading", "intensity": 3]),
                seq: "7")
            try await device.publishNumbers("events", ["type": "config_applied", "config_version": number("18446744073709551615")], seq: "1")
            try await device.publishNumbers("config/reported", ["version": number("9007199254740993"), "state": "applied"], seq: "1")
            // The last retained usage on the broker is now out of range.
            try await device.publishNumbers("usage", usage(started: "18446744073709551615"), seq: "4")
            try await rig.barrier()
            let refused = 8.0
            try await rig.waitForMetrics("the \(Int(refused)) out-of-range messages counted as malformed") {
                $0.sum("fleet_ingest_malformed_total") - malformedBefore == refused
            }
            #expect(rig.console.isRunning)
            let detail = try await rig.getJSON("/api/v1/devices/\(Fleet.lab)/huge-01")
            #expect(detail["usage"]?["sessions"]?["started"]?.int == 2, "the in-range usage stays: \(detail["usage"] ?? .null)")
            let page = try await rig.api.get("/devices/\(Fleet.lab)/huge-01", token: rig.tokens.admin)
            #expect(page.status < 500, "the dashboard's device page renders: \(page.status)")

            // Restarted, the console reads the retained out-of-range messages again: still refused, still up.
            #expect(try await rig.console.stop() == .exited(0))
            try await rig.console.restart()
            try await rig.barrier()
            #expect(rig.console.isRunning)
            let health = try await rig.api.get("/healthz", token: nil)
            #expect(health.status == 200 && health["status"]?.string == "ok", "\(health)")
            try await device.publishNumbers("usage", usage(started: "3"), seq: "5")
            try await rig.waitFor("/api/v1/devices/\(Fleet.lab)/huge-01", "the next in-range usage ingested") {
                $0.json?["usage"]?["sessions"]?["started"]?.int == 3
            }
            await device.close()
        }
    }

    @Test("an event seq that jumps by 2^53 is a device fault: the API answers within a second, ingest goes on, the systemd watchdog keeps being fed, sequence_fault is raised and counted")
    func hugeEventGapDoesNotFreezeTheConsole() async throws {
        let notify = try NotifyReceiver(FileManager.default.temporaryDirectory.appendingPathComponent("notify-e2e-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path)
        defer { notify.close() }
        let received = Mutex<[String]>([])
        @Sendable func notifications() -> [String] { received.withLock { $0 += notify.drain(); return $0 } }
        try await ConsoleRig.run(
            console: { $0.environment = ["NOTIFY_SOCKET": notify.path ?? "", "WATCHDOG_USEC": "1000000"] }, agents: []
        ) { rig in
            try await waitUntil(timeout: .seconds(10), "READY=1 and WATCHDOG=1 from the console") {
                let all = notifications()
                return all.contains("READY=1") && all.contains("WATCHDOG=1")
            }
            let device = try await CraftedDevice.connect(Fleet.device(Fleet.lab, "jumper"), broker: rig.broker, epoch: 2)
            try await rig.waitForDevice(device.device, "jumper online") { $0["online"]?.bool == true }
            let session: WireJSON = ["session_id": "s-2-0001", "program": "sole-vitality", "source": "remote"]
            try await device.publish("events", session.setting("type", to: "session_started"), seq: 1)

            // Before the fix, the console walked the 2^53 missing seqs inside its model lock: frozen for good.
            try await device.publish("events", ["type": "fault_raised", "fault": "x", "message": "hostile"], seq: Int(1 << 53))
            try await device.publish("events", ["type": "fault_raised", "fault": "x", "message": "hostile"], seq: Int(1 << 53), epoch: 9)
            try await rig.barrier(timeout: .seconds(5))
            let watchdogsBefore = notifications().filter { $0 == "WATCHDOG=1" }.count
            for path in ["/api/v1/devices", "/api/v1/devices/\(Fleet.lab)/jumper", "/api/v1/alerts?active=true"] {
                let clock = ContinuousClock()
                let started = clock.now
                let response = try await rig.api.request("GET", path, token: rig.tokens.admin, timeout: .seconds(1))
                #expect(response.status == 200 && started.duration(to: clock.now) < .seconds(1), "\(path): \(response.status) after \(started.duration(to: clock.now))")
            }
            let health = try await rig.api.request("GET", "/healthz", timeout: .seconds(1))
            #expect(health.status == 200 && health["ingest"]?["status"]?.string == "ok", "\(health)")

            // Ingest goes on: the device's real next event is the next one, not a late duplicate.
            try await device.publish("events", session.setting("type", to: "session_completed").setting("elapsed_s", to: 570), seq: 2)
            try await rig.waitFor("/api/v1/devices/\(Fleet.lab)/jumper", "s-2-0001 completed") {
                ($0.json?["recent_sessions"]?.array ?? []).contains { $0["session_id"]?.string == "s-2-0001" && $0["outcome"]?.string == "completed" }
            }
            let alerts = try await rig.waitFor("/api/v1/alerts?active=true", "a sequence_fault alert for jumper") {
                ($0.json?["alerts"]?.array ?? []).about(device.device).contains { $0["type"]?.string == "sequence_fault" }
            }
            let fault = (alerts.json?["alerts"]?.array ?? []).about(device.device).first { $0["type"]?.string == "sequence_fault" }
            #expect(fault?["message"]?.string?.contains("9007199254740992") == true, "the alert says what was refused: \(fault ?? .null)")
            let metrics = try await rig.metrics()
            #expect(metrics.sum("fleet_ingest_sequence_faults_total") == 2, "\(metrics.lines(of: ["fleet_ingest_sequence_faults_total"]))")
            #expect(device.commands(action: "resync").isEmpty, "a fault is not a gap to fill: \(device.commands.count) commands")
            try await waitUntil(timeout: .seconds(5), "the watchdog fed after the hostile events") {
                notifications().filter { $0 == "WATCHDOG=1" }.count > watchdogsBefore + 1
            }
            await device.close()
        }
    }

    @Test("a device over its ingest quota has its messages dropped, counted and alerted as quota_exceeded, while another device's every event is stored")
    func floodingDeviceIsHeldToItsQuota() async throws {
        try await ConsoleRig.run(console: { $0.settings = ["ingest": ["device_messages_per_s": 2, "device_burst_messages": 40]] }, agents: []) { rig in
            let flooder = try await CraftedDevice.connect(Fleet.device(Fleet.lab, "flooder"), broker: rig.broker, epoch: 1)
            let honest = try await CraftedDevice.connect(Fleet.device(Fleet.lab, "honest"), broker: rig.broker, epoch: 1)
            for device in [flooder, honest] {
                try await rig.waitForDevice(device.device, "\(device.device.device) online") { $0["online"]?.bool == true }
            }
            let storedBefore = try await rig.metrics().sum("fleet_events_stored_total")
            let flood = 300, sessions = 10
            for i in 0..<flood {
                try await flooder.publish("events", ["type": "fault_cleared", "fault": "overheat", "message": .string("flood \(i)")])
                if i % (flood / sessions) == 0 {
                    let s: WireJSON = ["session_id": .string("s-1-\(i)"), "program": "calf-release", "source": "device"]
                    try await honest.publish("events", s.setting("type", to: "session_started"))
                    try await honest.publish("events", s.setting("type", to: "session_completed").setting("elapsed_s", to: 60))
                }
            }
            // Every message of the flood is either stored or dropped and counted.
            let metrics = try await rig.waitForMetrics(timeout: .seconds(30), "every event stored or dropped") { m in
                m.sum("fleet_events_stored_total") - storedBefore + m.sum("fleet_ingest_quota_dropped_total") >= Double(flood + 2 * sessions)
            }
            let dropped = metrics.sum("fleet_ingest_quota_dropped_total")
            #expect(dropped >= 150 && dropped <= Double(flood - 30), "the burst of 40 (less its connect messages) passes, the rest mostly not: \(dropped) dropped")
            #expect(metrics.sum("fleet_events_stored_total") - storedBefore + dropped == Double(flood + 2 * sessions),
                    "\(metrics.lines(of: ["fleet_events_stored_total", "fleet_ingest_quota_dropped_total"]))")
            let alerts = try await rig.waitFor("/api/v1/alerts?active=true", "quota_exceeded for flooder") {
                ($0.json?["alerts"]?.array ?? []).about(flooder.device).contains { $0["type"]?.string == "quota_exceeded" }
            }
            let alert = (alerts.json?["alerts"]?.array ?? []).about(flooder.device).first { $0["type"]?.string == "quota_exceeded" }
            #expect(alert?["message"]?.string?.contains("2 messages") == true && alert?["message"]?.string?.contains("dropped") == true, "\(alert ?? .null)")
            #expect(try await rig.alerts(active: true).about(honest.device).isEmpty, "the honest device raised nothing")
            let page = try await rig.getJSON("/api/v1/devices/\(Fleet.lab)/honest")
            let completed = (page["recent_sessions"]?.array ?? []).filter { $0["outcome"]?.string == "completed" }
            #expect(completed.count == sessions, "every session of the honest device: \(page["recent_sessions"] ?? .null)")
            await flooder.close()
            await honest.close()
        }
    }

    @Test("an abort reason a device made up is counted as reason=\"other\" in /metrics, escaped and bounded, never as its own series")
    func madeUpAbortReasonsAreBoundedLabels() async throws {
        try await ConsoleRig.run(agents: []) { rig in
            let device = try await CraftedDevice.connect(Fleet.device(Fleet.lab, "liar"), broker: rig.broker, epoch: 1)
            try await rig.waitForDevice(device.device, "liar online") { $0["online"]?.bool == true }
            let reasons = ["evil\"} 1\nfleet_injected_total 1\n# x"] + (0..<40).map { "made-up-\($0)" } + ["pain_signal"]
            for (i, reason) in reasons.enumerated() {
                let base: WireJSON = ["session_id": .string("s-1-\(i)"), "program": "calf-release", "source": "device"]
                try await device.publish("events", base.setting("type", to: "session_started"))
                try await device.publish("events", base.setting("type", to: "session_aborted").setting("reason", to: .string(reason)).setting("elapsed_s", to: 5))
            }
            let metrics = try await rig.waitForMetrics(timeout: .seconds(20), "every abort counted") {
                $0.sum("fleet_session_aborts_total") >= Double(reasons.count)
            }
            let series = metrics.samples.filter { $0.name == "fleet_session_aborts_total" }
            #expect(Set(series.map { $0.labels["reason"] ?? "?" }).isSubset(of: ["pain_signal", "other", "overheat", "remote_stop", "time_limit", "overpressure", "sensor_fault", "hardware_fault", "shutdown", "interrupted"]),
                    "\(series.map(\.labels))")
            #expect(metrics.value("fleet_session_aborts_total", ["reason": "other"]) == Double(reasons.count - 1))
            #expect(!metrics.text.contains("fleet_injected_total") && !metrics.text.contains("made-up"), "\(metrics.text)")
            await device.close()
        }
    }

    @Test("outbox_drops is raised when a device's outbox_dropped grows and clears once it has not grown for the window; growing again raises it again")
    func outboxDropsAlertClears() async throws {
        try await ConsoleRig.run(console: { $0.health.outboxDropWindowSeconds = 2 }, agents: []) { rig in
            let device = try await CraftedDevice.connect(Fleet.device(Fleet.lab, "dropper"), broker: rig.broker, epoch: 1)
            try await rig.waitForDevice(device.device, "dropper online") { $0["online"]?.bool == true }
            func usage(_ dropped: Int) -> WireJSON {
                ["sessions": ["started": 0, "completed": 0, "aborted": [:]],
                 "seconds": ["by_zone": [:], "by_point": [:], "by_technique": [:], "by_program": [:]], "outbox_dropped": .int(dropped)]
            }
            func active() async throws -> Bool {
                try await rig.alerts(active: true).about(device.device).contains { $0["type"]?.string == "outbox_drops" }
            }
            try await device.publish("usage", usage(0))
            try await device.publish("usage", usage(3))
            try await rig.waitFor("/api/v1/alerts?active=true", "outbox_drops raised") {
                ($0.json?["alerts"]?.array ?? []).about(device.device).contains { $0["type"]?.string == "outbox_drops" }
            }
            // Before the fix the counter (still 3) kept it raised for good.
            try await device.publish("usage", usage(3))
            try await rig.waitFor("/api/v1/alerts?active=true", timeout: .seconds(15), "outbox_drops cleared: no growth for the 2 s window") {
                !($0.json?["alerts"]?.array ?? []).about(device.device).contains { $0["type"]?.string == "outbox_drops" }
            }
            try await device.publish("usage", usage(3))
            try await rig.barrier()
            #expect(try await active() == false, "the same count again is no growth")
            try await device.publish("usage", usage(5))
            try await rig.waitFor("/api/v1/alerts?active=true", "outbox_drops raised again") {
                ($0.json?["alerts"]?.array ?? []).about(device.device).contains { $0["type"]?.string == "outbox_drops" }
            }
            let history = try await rig.alerts(active: false).about(device.device).filter { $0["type"]?.string == "outbox_drops" }
            #expect(history.count == 2, "raised, cleared, raised again: \(history)")
            await device.close()
        }
    }

    @Test("a session_completed lost just before the agent restarts is asked for: a new epoch brings a resync, once, and the event fills the session; a console restart asks nothing again")
    func lostLastEventOfEpochIsResynced() async throws {
        try await ConsoleRig.run(agents: []) { rig in
            let name = Fleet.device(Fleet.lab, "crashy")
            let before = try await CraftedDevice.connect(name, broker: rig.broker, epoch: 5)
            try await rig.waitForDevice(name, "crashy online at epoch 5") { $0["online"]?.bool == true && $0["epoch"]?.int == 5 }
            let session: WireJSON = ["session_id": "s-5-0001", "program": "sole-vitality", "source": "remote"]
            try await before.publish("events", session.setting("type", to: "session_started"), seq: 1)
            try await rig.waitFor("/api/v1/devices/\(Fleet.lab)/crashy", "s-5-0001 running") {
                ($0.json?["recent_sessions"]?.array ?? []).contains { $0["session_id"]?.string == "s-5-0001" }
            }
            // session_completed (epoch 5, seq 2) was acknowledged by the broker and then lost: never published here.
            let lost = before.stamped("events", session.setting("type", to: "session_completed").setting("elapsed_s", to: 570), seq: 2)
            await before.close()

            // The agent starts again: epoch 6, seq 1. No gap shows the loss.
            let after = try await CraftedDevice.connect(name, broker: rig.broker, epoch: 6)
            let resync = try await after.waitForCommand(action: "resync")
            try await after.reply(to: resync, result: ["republished": ["status", "usage", "config/reported", "events"]])
            try await after.publishRaw("events", lost.setting("historical", to: true).bytes)
            try await after.publish("events", ["type": "fault_cleared", "fault": "overheat"], seq: 1)
            try await rig.waitFor("/api/v1/devices/\(Fleet.lab)/crashy", "s-5-0001 completed, from the resync") {
                ($0.json?["recent_sessions"]?.array ?? []).contains { $0["session_id"]?.string == "s-5-0001" && $0["outcome"]?.string == "completed" }
            }
            try await rig.barrier()
            #expect(after.commands(action: "resync").count == 1, "one resync for the new epoch (its status and first event): \(after.commands.count)")

            // A console restart re-reads the retained status of epoch 6: nothing new to ask.
            #expect(try await rig.console.stop() == .exited(0))
            try await rig.console.restart()
            try await after.publish("events", ["type": "fault_cleared", "fault": "overheat"], seq: 2)
            try await rig.barrier()
            #expect(after.commands(action: "resync").count == 1, "no resync after the console's restart: \(after.commands.count)")
            await after.close()
        }
    }
}

/// A JSON number written as is (`number("18446744073709551615")`), where
/// `WireJSON`'s `Int` and `Double` cannot hold it: a placeholder string that
/// `publishNumbers` turns into the number's text.
func number(_ text: String) -> WireJSON { .string("<<\(text)>>") }

extension CraftedDevice {
    /// Publishes `body` stamped (`seq` given as text, so it may be any
    /// number), with every `number(…)` placeholder written as its raw text;
    /// status, usage and config/reported retained unless `retain` says otherwise.
    func publishNumbers(_ kind: String, _ body: WireJSON, seq: String, retain: Bool? = nil) async throws {
        let message = stamped(kind, body, seq: 0).setting("seq", to: number(seq))
        let text = message.text.replacingOccurrences(of: #""<<([-+0-9.eE]+)>>""#, with: "$1", options: .regularExpression)
        try await publishRaw(kind, Array(text.utf8), retain: retain ?? ["status", "usage", "config/reported"].contains(kind))
    }
}

// Issue 20, item 17: each telemetry- and config-driven alert, raised and cleared, end to end.
extension ConsoleEndToEndTests {
    @Test("stale, fault, overheat and config_drift alerts are each raised by their condition and cleared when it is gone")
    func deviceAlertsRaiseAndClear() async throws {
        try await ConsoleRig.run(console: { $0.health.configDriftSeconds = 1 }, agents: []) { rig in
            let device = try await CraftedDevice.connect(Fleet.device(Fleet.lab, "alerty"), broker: rig.broker, epoch: 1)
            try await rig.waitForDevice(device.device, "alerty online") { $0["online"]?.bool == true }
            let idle: WireJSON = ["session_state": "idle", "pressure_mmhg": [:], "motor_temp_c": 30, "faults": [], "interval_s": 0.5]
            func waitFor(_ type: String, active: Bool, _ why: String) async throws {
                try await rig.waitFor("/api/v1/alerts?active=true", timeout: .seconds(15), "\(type) \(active ? "raised" : "cleared"): \(why)") {
                    ($0.json?["alerts"]?.array ?? []).about(device.device).contains { $0["type"]?.string == type } == active
                }
            }
            // stale: telemetry stops for more than 3 intervals; it comes back.
            try await device.publish("telemetry", idle, retain: false)
            try await waitFor("stale", active: true, "no telemetry for 3 × 0.5 s")
            try await device.publish("telemetry", idle.setting("interval_s", to: 30), retain: false)
            try await waitFor("stale", active: false, "telemetry again")

            // fault: reported in telemetry, then healthy again.
            try await device.publish("telemetry", idle.setting("interval_s", to: 30).setting("faults", to: ["pressure_sensor"]), retain: false)
            try await waitFor("fault", active: true, "faults: [pressure_sensor]")
            try await device.publish("telemetry", idle.setting("interval_s", to: 30), retain: false)
            try await waitFor("fault", active: false, "faults: []")

            // overheat: the motor cools down in `cooldown`; idle again.
            try await device.publish("telemetry", idle.setting("interval_s", to: 30).setting("session_state", to: "cooldown"), retain: false)
            try await waitFor("overheat", active: true, "session_state: cooldown")
            try await device.publish("telemetry", idle.setting("interval_s", to: 30), retain: false)
            try await waitFor("overheat", active: false, "session_state: idle")

            // config_drift: desired version 2 while the device runs 1, for more than config_drift_s; then applied.
            try await device.publish("config/reported", ["version": 1, "state": "applied", "applied_version": 1])
            try await rig.probe.client.publish(
                device.topic("config/desired"), payload: (["version": 2, "config": [:]] as WireJSON).bytes, qos: .atLeastOnce, retain: true)
            try await waitFor("config_drift", active: true, "desired 2, applied 1")
            try await device.publish("config/reported", ["version": 2, "state": "applied", "applied_version": 2])
            try await waitFor("config_drift", active: false, "applied 2")
            try await rig.probe.client.publish(device.topic("config/desired"), payload: [], qos: .atLeastOnce, retain: true)
            await device.close()
        }
    }
}
