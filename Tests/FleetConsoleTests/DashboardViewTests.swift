@testable import FleetConsole
import FleetProtocol
import Foundation
import Testing

/// What the dashboard and the API make of the fleet for people (issue 24,
/// items 3 and 4; issue 23, item 4's device list): pure, no console.
@Suite("Dashboard views: device list pages, numbers and times as people read them, floor tiles")
struct DashboardViewTests {
    static func summary(_ site: String, _ device: String, _ state: DeviceState = .idle, program: String? = nil, seen: Double = 0) -> DeviceSummary {
        DeviceSummary(site: site, device: device, online: state != .offline, state: state,
                      session: program.map { SessionNow(sessionID: "s-\(device)", program: $0, startedAt: nil, state: "running") },
                      health: .ok, alerts: [], epoch: 1, lastSeen: Date(timeIntervalSince1970: 1_800_000_000 + seen), agentVersion: "1",
                      config: ConfigVersions())
    }

    static func query(_ items: [String: String], defaultLimit: Int? = nil) throws(ConsoleError) -> DeviceListQuery {
        try DeviceListQuery({ items[$0] }, defaultLimit: defaultLimit)
    }

    static let fleet: [DeviceSummary] = (1...25).map { (n: Int) -> DeviceSummary in
        let running = n % 5 == 0
        let site = n % 2 == 0 ? "b" : "a"
        let state: DeviceState = running ? .inSession : .idle
        return summary(site, String(format: "m-%02d", n), state, program: running ? "calf-release" : nil, seen: Double(100 - n))
    }

    @Test("without paging parameters the whole list, as before; limit and offset cut pages that cover every device once")
    func pages() throws {
        let whole = try Self.query([:]).page(of: Self.fleet)
        #expect(whole.devices.count == 25 && whole.total == 25 && whole.limit == nil && whole.nextOffset == nil)
        var seen: [String] = []
        var offset: Int? = 0
        while let o = offset {
            let page = try Self.query(["limit": "10", "offset": "\(o)", "sort": "device"]).page(of: Self.fleet)
            #expect(page.devices.count <= 10 && page.total == 25)
            seen += page.devices.map(\.device)
            offset = page.nextOffset
        }
        #expect(seen == Self.fleet.map(\.device).sorted())
        let beyond = try Self.query(["limit": "10", "offset": "100"]).page(of: Self.fleet)
        #expect(beyond.devices.isEmpty && beyond.total == 25 && beyond.nextOffset == nil)
        #expect(try Self.query(["offset": "5"]).limit == DeviceListQuery.maxLimit, "an offset alone pages with the largest page")
        #expect(try Self.query([:], defaultLimit: 50).page(of: Self.fleet).nextOffset == nil)
    }

    @Test("sorts by any column either way, ties by site then device; q finds a device or its program")
    func sortAndSearch() throws {
        let down = try Self.query(["sort": "-device"]).page(of: Self.fleet).devices.map(\.device)
        #expect(down == Self.fleet.map(\.device).sorted(by: >))
        let bySeen = try Self.query(["sort": "last_seen"]).page(of: Self.fleet).devices.map(\.device)
        #expect(bySeen.first == "m-25" && bySeen.last == "m-01")
        let byState = try Self.query(["sort": "state"]).page(of: Self.fleet).devices
        #expect(byState.prefix(20).allSatisfy { $0.state == .idle } && byState.suffix(5).allSatisfy { $0.state == .inSession })
        #expect(byState.prefix(20).map { "\($0.site)/\($0.device)" } == byState.prefix(20).map { "\($0.site)/\($0.device)" }.sorted())
        #expect(try Self.query(["q": "M-0"]).page(of: Self.fleet).total == 9)
        #expect(try Self.query(["q": "CALF"]).page(of: Self.fleet).devices.map(\.device) == ["m-05", "m-15", "m-25", "m-10", "m-20"], "by site, then device")
    }

    @Test("bad parameters are refused with a message that names the parameter", arguments: [
        ("limit", "0"), ("limit", "1001"), ("limit", "ten"), ("offset", "-1"), ("offset", "x"), ("sort", "colour"), ("sort", "--device"),
        ("state", "asleep"), ("health", "fine"), ("q", String(repeating: "x", count: 65)),
    ])
    func badParameters(name: String, value: String) {
        do {
            _ = try Self.query([name: value])
            Issue.record("\(name)=\(value) was accepted")
        } catch {
            #expect(error.message.hasPrefix("\(name):"), "\(error.message)")
            #expect(error.message.count < 300)
        }
    }

    @Test("times in the site's zone with the zone shown; durations as m:ss; counts as integers")
    func formats() {
        let d = Date(timeIntervalSince1970: 1_796_000_000) // 2026-11-30 00:53:20 UTC
        #expect(DashboardFormat.time(d, in: TimeZone(identifier: "UTC")!) == "2026-11-30 00:53:20 UTC")
        let berlin = DashboardFormat.time(d, in: TimeZone(identifier: "Europe/Berlin")!)
        // The zone as Foundation abbreviates it: CET, or GMT+1 where its data has no letters for it.
        #expect(berlin == "2026-11-30 01:53:20 CET" || berlin == "2026-11-30 01:53:20 GMT+1", "\(berlin)")
        let summer = DashboardFormat.time(Date(timeIntervalSince1970: 1_782_000_000), in: TimeZone(identifier: "Europe/Berlin")!)
        #expect(summer.hasSuffix(" CEST") || summer.hasSuffix(" GMT+2"), "\(summer)")
        #expect(DashboardFormat.time(nil, in: .current) == "")
        #expect(DashboardFormat.duration(0) == "0:00")
        #expect(DashboardFormat.duration(79.6) == "1:20")
        #expect(DashboardFormat.duration(750) == "12:30")
        #expect(DashboardFormat.duration(3725) == "1:02:05")
        #expect(DashboardFormat.duration(-5) == "0:00")
        #expect(DashboardFormat.duration(.nan) == "0:00")
        #expect(DashboardFormat.duration(.infinity) == "0:00")
        #expect(DashboardFormat.duration(1e12) == "24:00:00")
        #expect(DashboardFormat.count(5) == "5")
        #expect(DashboardFormat.count(.nan) == "0")
        let chart = UsageCharts.bars(title: "Sessions", [("completed", 5), ("aborted: pain_signal", 1)], format: DashboardFormat.count)
        #expect(!chart.contains(">5.0</text>") && chart.contains(">5</text>") && chart.contains(": 5</title>"), "\(chart)")
    }

    @Test("a floor tile: state as a colour and a word, program and time left in a session, lockout and faults in words, device text bounded")
    func tiles() {
        var r = DeviceRecord(site: "clinic-north", device: "m-1")
        #expect(DashboardFloor.tile(r).state == "offline" && DashboardFloor.tile(r).label == "Offline")
        r.online = true
        r.session = SessionNow(sessionID: "s1", program: "calf-release", startedAt: nil, state: "running")
        r.telemetry = Telemetry(sessionState: .running, program: "calf-release",
                                step: CurrentStep(index: 2, target: "sp6", zone: "calf", point: "sp6", technique: "kneading", intensity: 4, remainingSeconds: 80),
                                motorTempC: 30, intervalSeconds: 5)
        let running = DashboardFloor.tile(r)
        #expect(running.state == "in_session" && running.label == "In session" && running.program == "calf-release")
        #expect(running.left == "step 3 · 1:20 left" && running.alert.isEmpty)
        r.session = nil
        r.telemetry = Telemetry(sessionState: .idle, motorTempC: 30,
                                lockout: .init(reason: "pain_signal", zone: "calf", point: "sp6", remainingSeconds: 299.2), intervalSeconds: 5)
        let locked = DashboardFloor.tile(r)
        #expect(locked.state == "locked_out" && locked.label == "Locked out" && locked.alert == "pain lockout at SP6, 5:00 left")
        r.telemetry = Telemetry(sessionState: .fault, motorTempC: 30, faults: ["overpressure", String(repeating: "z", count: 200)], intervalSeconds: 5)
        let faulted = DashboardFloor.tile(r)
        #expect(faulted.state == "faulted" && faulted.label == "Faulted" && faulted.alert.hasPrefix("fault: overpressure, "))
        #expect(faulted.alert.count < 80)
    }

    @Test("the telemetry history is bounded per device and in total, keeps only known zones and finite pressures, and starts afresh with a new session")
    func historyBounds() throws {
        let history = TelemetryHistory()
        let a = try DeviceAddress(site: "clinic-north", device: "m-1")
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        func telemetry(_ session: String, pressure: [String: Double], step: Int = 0) -> Telemetry {
            Telemetry(sessionState: .running, sessionID: session, program: "calf-release",
                      step: CurrentStep(index: step, target: "calf", zone: "calf", technique: "kneading", intensity: 3, remainingSeconds: 10),
                      pressureMMHg: pressure, motorTempC: 30, intervalSeconds: 1)
        }
        for i in 0..<(TelemetryHistory.samplesPerDevice + 50) {
            history.record(a, telemetry("s1", pressure: ["calf": 40, "evil-zone": 99, "heel": .nan], step: i), at: t0.addingTimeInterval(Double(i)))
        }
        let kept = try #require(history.history(a))
        #expect(kept.samples.count == TelemetryHistory.samplesPerDevice)
        #expect(kept.steps.count == TelemetryHistory.stepsPerDevice)
        #expect(kept.samples.allSatisfy { $0.pressure(of: 1) == 40 && $0.pressure(of: 4) == nil })
        let chart = DashboardSessionPicture.chart(kept)
        #expect(chart.contains("data-zone=\"calf\"") && !chart.contains("evil") && !chart.contains("heel"))
        history.record(a, telemetry("s2", pressure: ["calf": 20]), at: t0.addingTimeInterval(1000))
        #expect(history.history(a)?.samples.count == 1, "a new session starts afresh")
        history.record(a, Telemetry(sessionState: .idle, motorTempC: 30, intervalSeconds: 1), at: t0.addingTimeInterval(1001))
        #expect(history.history(a)?.samples.count == 1, "idle telemetry is not kept")
        for n in 0..<(TelemetryHistory.maxDevices + 10) {
            history.record(try DeviceAddress(site: "spa-south", device: "d-\(n)"), telemetry("s", pressure: ["arch": 10]), at: t0)
        }
        #expect(history.deviceCount == TelemetryHistory.maxDevices)
    }

    @Test("the floor's tiles are shared over the sites: a site under its share shows every device and leaves the rest to the others; the page never passes the budget, however many sites")
    func tileBudget() {
        let shared = DashboardFloor.allowances(["north": 10, "south": 5_000, "east": 5_000], budget: 500)
        #expect(shared == ["north": 10, "east": 245, "south": 245])
        #expect(DashboardFloor.allowances(["a": 3, "b": 4], budget: 500) == ["a": 3, "b": 4], "small fleets show every device")
        var many: [String: Int] = [:]
        for i in 0..<1_000 { many["site-\(i)"] = 10 }
        let spread = DashboardFloor.allowances(many, budget: 500)
        #expect(spread.values.reduce(0, +) == 500 && spread.values.allSatisfy { $0 <= 1 }, "a thousand sites share the same 500")
        #expect(DashboardFloor.allowances(["a": 7], budget: 0) == ["a": 0])
    }
}
