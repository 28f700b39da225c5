@testable import FleetConsole
import FleetProtocol
import Foundation
import FleetTestSupport
import Logging
import Mosquitto
import Testing

/// The health rules, pure (issue 22, item 1): a fleet model, thresholds and
/// `now` in, alert conditions out; and the hysteresis that raises and
/// clears alerts. On a manual clock: each boundary is checked at its second.
@Suite("Health rules: which alerts the fleet calls for, and when they clear")
struct HealthRulesTests {
    static let a = try! DeviceAddress(site: "clinic-north", device: "m-1")
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    static let rules = HealthRules(thresholds: HealthThresholds(), quota: DeviceQuota(), databaseDescription: "/var/lib/fleet-console/db.sqlite")

    static func online(telemetryAt: Date = t0, interval: Double = 5, faults: [String] = [], state: SessionPhase = .idle) -> DeviceRecord {
        var r = DeviceRecord(site: a.site.rawValue, device: a.device.rawValue)
        r.online = true
        r.telemetryAt = telemetryAt
        r.telemetry = Telemetry(sessionState: state, motorTempC: 30, faults: faults, intervalSeconds: interval)
        return r
    }

    static func types(_ r: DeviceRecord, at seconds: Double, rules: HealthRules = rules, pain: [PainSignalCount] = [], storage: StorageStatus? = nil) -> [String] {
        rules.conditions(devices: [a: r], pain: pain, storage: storage, now: t0.addingTimeInterval(seconds)).keys.map(\.type).sorted()
    }

    @Test("stale after stale_factor intervals without telemetry, not a second before; a replica allows 3 s more")
    func stale() {
        let r = Self.online()
        #expect(Self.types(r, at: 15).isEmpty, "3 × 5 s: not yet")
        #expect(Self.types(r, at: 15.01) == ["stale"])
        var replica = Self.rules
        replica.sharingDelay = 3
        #expect(Self.types(r, at: 18, rules: replica).isEmpty && Self.types(r, at: 18.01, rules: replica) == ["stale"])
    }

    @Test("offline is critical when the connection was lost and a warning when the agent shut down; a revoked device raises nothing")
    func offline() {
        var r = Self.online()
        r.online = false
        let lost = Self.rules.conditions(devices: [Self.a: r], pain: [], storage: nil, now: Self.t0)
        #expect(lost.values.map(\.severity) == [.critical] && lost.keys.map(\.type) == ["offline"])
        r.offlineReason = "shutdown"
        #expect(Self.rules.conditions(devices: [Self.a: r], pain: [], storage: nil, now: Self.t0).values.map(\.severity) == [.warning])
        r.revokedAt = Self.t0
        #expect(Self.types(r, at: 0).isEmpty)
    }

    @Test("faults, a cooldown, config drift past config_drift_s, outbox drops within the window, quota and sequence faults within 10 minutes")
    func deviceConditions() {
        #expect(Self.types(Self.online(faults: ["pressure_sensor"]), at: 1) == ["fault"])
        #expect(Self.types(Self.online(faults: ["overheat"]), at: 1) == ["fault", "overheat"])
        #expect(Self.types(Self.online(state: .cooldown), at: 1) == ["overheat"])
        var drift = Self.online(telemetryAt: Self.t0.addingTimeInterval(300))
        drift.desired = DesiredConfig(version: 4, config: DeviceConfig())
        drift.desiredSince = Self.t0
        #expect(Self.types(drift, at: 300).isEmpty && Self.types(drift, at: 300.5) == ["config_drift"])
        var dropped = Self.online(telemetryAt: Self.t0.addingTimeInterval(3600))
        dropped.outboxDropsGrewAt = Self.t0
        #expect(Self.types(dropped, at: 3599) == ["outbox_drops"] && Self.types(dropped, at: 3600).isEmpty)
        var flooded = Self.online(telemetryAt: Self.t0.addingTimeInterval(600))
        flooded.quotaExceededAt = Self.t0
        flooded.quotaDrops = 7
        let message = Self.rules.conditions(devices: [Self.a: flooded], pain: [], storage: nil, now: Self.t0.addingTimeInterval(1)).values.first?.message
        #expect(message?.contains("(20 messages, 16384 bytes a second); 7 message(s) dropped") == true, "\(message ?? "")")
        #expect(Self.types(flooded, at: 600).isEmpty)
        var jumped = Self.online(telemetryAt: Self.t0.addingTimeInterval(600))
        jumped.sequenceFaultAt = Self.t0
        #expect(Self.types(jumped, at: 599) == ["sequence_fault"] && Self.types(jumped, at: 600).isEmpty)
    }

    @Test("pain signals of one program at one site from pain_signal_count; disk_space below disk_free_min_mb, about the console itself")
    func fleetConditions() {
        let r = Self.online()
        let pain = [PainSignalCount(site: "clinic-north", program: "calf_relief", count: 3), PainSignalCount(site: "spa-south", program: "calf_relief", count: 2)]
        let found = Self.rules.conditions(devices: [Self.a: r], pain: pain, storage: nil, now: Self.t0)
        #expect(found.keys.map { "\($0.site)/\($0.type)" } == ["clinic-north/pain_signals"])
        let gib: Int64 = 1 << 30
        #expect(Self.types(r, at: 0, storage: StorageStatus(databaseBytes: 1, freeBytes: gib)).isEmpty, "1,024 MiB free is not below 1,024")
        let low = Self.rules.conditions(devices: [:], pain: [], storage: StorageStatus(databaseBytes: 1, freeBytes: gib - 1), now: Self.t0)
        #expect(low.keys.map(\.site) == [FleetModel.consoleSite] && low.values.first?.severity == .critical)
        #expect(low.values.first?.message.contains("1023 MiB free beside the database /var/lib/fleet-console/db.sqlite") == true)
        #expect(Self.types(r, at: 0, storage: StorageStatus(databaseBytes: 1, freeBytes: nil)).isEmpty, "PostgreSQL: no free figure, no alert")
    }

    @Test("alerts: raised once while called for, cleared only after clear_after_s without their condition, raised again when it returns")
    func hysteresis() {
        var m = FleetModel()
        let key = FleetModel.AlertKey(site: "clinic-north", device: "m-1", type: "stale")
        let stale = [key: HealthRules.Condition(severity: .warning, message: "quiet")]
        func at(_ s: Double) -> Date { Self.t0.addingTimeInterval(s) }
        var (raise, clear) = m.reconcileAlerts(stale, now: at(0), clearAfter: 5)
        #expect(raise.map(\.0) == [key] && clear.isEmpty)
        m.activeAlerts[key] = .init(id: 41, severity: .warning, message: "quiet", lastSeen: at(0))
        (raise, clear) = m.reconcileAlerts(stale, now: at(1), clearAfter: 5)
        #expect(raise.isEmpty && clear.isEmpty, "still called for: nothing new")
        (raise, clear) = m.reconcileAlerts([:], now: at(5.9), clearAfter: 5)
        #expect(clear.isEmpty, "gone 4.9 s: kept (a flapping device does not flood the alerts)")
        (raise, clear) = m.reconcileAlerts([:], now: at(6), clearAfter: 5)
        #expect(clear == [41] && m.activeAlerts.isEmpty)
        (raise, _) = m.reconcileAlerts(stale, now: at(7), clearAfter: 5)
        #expect(raise.map(\.0) == [key], "back: raised again")
    }

    @Test("the console's own loops on a manual clock: an unanswered command expires and a quiet device goes stale, with no real time waited")
    func loopsOnAManualClock() async throws {
        let directory = try TemporaryDirectory(prefix: "console-manual-clock")
        defer { directory.remove() }
        let clock = ManualConsoleClock(Self.t0)
        var logger = Logger(label: "test.console")
        logger.logLevel = .critical
        let core = try await ConsoleCore(configuration: ConsoleConfiguration(databasePath: directory.file("console.sqlite").path), logger: logger, clock: clock)
        let address = Self.a
        // Online, with telemetry every 5 s (stale after 15 s of silence); the client never connects, so a command stays queued.
        let ts = RFC3339.string(from: Self.t0)
        for (kind, body) in [(DeviceTopicKind.status, #""state": "online", "agent_version": "1", "programs": [], "config_version": 0, "capabilities": []"#),
                             (.telemetry, #""session_state": "idle", "pressure_mmhg": {}, "motor_temp_c": 30, "faults": [], "interval_s": 5"#)] {
            let json = "{\(body), \"epoch\": 1, \"seq\": 1, \"ts\": \"\(ts)\"}"
            core.ingest.receive(MQTTMessage(topic: core.configuration.topicRoot.topic(kind, for: address), payload: Array(json.utf8), qos: .atLeastOnce, retain: false))
        }
        let record = try await core.commands.submit(CommandSubmission(action: "ping", targets: .init(devices: ["\(address)"]), ttlSeconds: 60), by: Principal(name: "desk", role: .admin))
        func state() -> CommandState? {
            (core.commands.inFlight.withLock { $0[record.id] } ?? core.state.pending.withLock { $0.commands[record.id] })?.results.first?.state
        }
        #expect(state() == .queued)

        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { await core.commands.sweepLoop() }
            group.addTask { await core.healthMonitor.loop() }
            try await waitUntil(timeout: .seconds(10), "both loops asleep on the manual clock") { clock.sleepers >= 2 }
            #expect(state() == .queued && core.state.model.withLock { $0.activeAlerts.isEmpty }, "nothing happens before the clock moves")
            clock.advance(by: 61)
            try await waitUntil(timeout: .seconds(10), "the copy expired and the device alerted stale") {
                state() == .expired && core.state.model.withLock { $0.activeAlerts.keys.contains { $0.type == "stale" } }
            }
            group.cancelAll()
        }
        await core.store.close()
    }
}
