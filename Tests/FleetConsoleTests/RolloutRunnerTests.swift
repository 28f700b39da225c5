@testable import FleetConsole
import FleetProtocol
import Foundation
import MassageEngine
import Testing

/// The rollout runner on a manual clock: no broker, no devices, just the rules.
@Suite("Rollout runner rules")
struct RolloutRunnerTests {
    struct Fleet {
        var devices: [DeviceAddress: RolloutObservation] = [:]
        init(_ count: Int, online: Bool = true, zone: TimeZone = TimeZone(identifier: "Europe/Berlin")!) {
            for i in 0..<count {
                devices[try! DeviceAddress(site: i % 2 == 0 ? "north" : "south", device: "m\(i)")] =
                    RolloutObservation(online: online, desired: nil, reported: nil, telemetryAt: nil, faults: [], timeZone: zone)
            }
        }
        var addresses: [DeviceAddress] { devices.keys.sorted() }

        /// Devices answer what they were written: `reply` decides applied/pending/rolled_back.
        mutating func answer(_ actions: [RolloutAction], now: Date, reply: (DeviceAddress) -> ConfigApplyState = { _ in .applied }) {
            for case .writeDesired(let a, let desired) in actions {
                devices[a]?.desired = desired
                let state = reply(a)
                devices[a]?.reported = ReportedConfig(version: desired.version, state: state, appliedVersion: state == .applied ? desired.version : nil)
            }
        }
        mutating func telemetry(at date: Date) { for a in devices.keys { devices[a]?.telemetryAt = date } }
    }

    func document(_ configure: (inout RolloutDocument) -> Void = { _ in }) -> RolloutDocument {
        var d = RolloutDocument(name: "test", config: DeviceConfig(telemetryIntervalSeconds: 2), targets: .init(all: true),
                                waves: .init(canary: 1, percentages: [50, 100]), bakeSeconds: 10, errorThreshold: .init(percent: 50, minExecuted: 1, action: "abort"),
                                applyTimeoutSeconds: 60, maintenanceWindow: nil, onAbort: nil, lifetimeHours: nil)
        configure(&d)
        return d
    }

    /// Runs steps every second until `until` returns true or `limit` steps.
    func run(_ r: inout Rollout, _ fleet: inout Fleet, from start: Date, steps limit: Int = 200,
             reply: (DeviceAddress) -> ConfigApplyState = { _ in .applied }, until: (Rollout) -> Bool) -> (Date, [RolloutAction]) {
        var now = start
        var all: [RolloutAction] = []
        for _ in 0..<limit {
            let f = fleet
            let actions = RolloutRunner.step(&r, now: now, observe: { f.devices[$0] })
            all += actions
            fleet.answer(actions, now: now, reply: reply)
            now = now.addingTimeInterval(1)
            fleet.telemetry(at: now)
            if until(r) { break }
        }
        return (now, all)
    }

    let start = Date(timeIntervalSince1970: 1_800_000_000) // a Friday, 08:00 UTC

    @Test("waves: the canary alone, then cumulative percentages; or a growing factor")
    func waveSizes() {
        #expect(document().waveSizes(count: 20) == [1, 9, 10])
        #expect(document { $0.waves = .init(canary: 2, percentages: nil, factor: 2) }.waveSizes(count: 20) == [2, 4, 8, 6])
        #expect(document().waveSizes(count: 1) == [1])
    }

    @Test("a good config goes canary first, bakes between waves, and completes with every device succeeded")
    func canaryFirst() {
        var fleet = Fleet(10)
        var r = Rollout(id: "r1", document: document(), targets: fleet.addresses, createdBy: "t", now: start)
        var firstWrite: [DeviceAddress: Date] = [:]
        var now = start
        for _ in 0..<200 {
            let f = fleet
            let actions = RolloutRunner.step(&r, now: now, observe: { f.devices[$0] })
            for case .writeDesired(let a, _) in actions where firstWrite[a] == nil { firstWrite[a] = now }
            fleet.answer(actions, now: now)
            now = now.addingTimeInterval(1)
            fleet.telemetry(at: now)
            if r.state == .completed { break }
        }
        #expect(r.state == .completed)
        #expect(r.devices.allSatisfy { $0.state == .succeeded })
        let canary = r.devices.first { $0.wave == 0 }!.address!
        let others = r.devices.filter { $0.wave > 0 }.compactMap { firstWrite[$0.address!] }
        // The next wave waited for the canary's success plus the 10 s bake.
        #expect(others.allSatisfy { $0.timeIntervalSince(firstWrite[canary]!) >= 10 })
    }

    @Test("verifying counts from the applied report's arrival: telemetry received after it, before the step that saw the report, makes the device succeed in that step; without the arrival time it must wait for newer telemetry")
    func verifyingFromTheReport() {
        for known in [true, false] {
            var fleet = Fleet(2)
            var r = Rollout(id: "r6", document: document { $0.waves = .init(canary: 1, percentages: [100]); $0.bakeSeconds = 0 },
                            targets: fleet.addresses, createdBy: "t", now: start)
            let f0 = fleet
            let written = RolloutRunner.step(&r, now: start, observe: { f0.devices[$0] })
            fleet.answer(written, now: start)
            let canary = r.devices.first { $0.wave == 0 }!.address!
            // The report arrives 0.1 s after the write, telemetry 0.1 s after that, the next step at 0.5 s.
            fleet.devices[canary]?.reportedAt = known ? start.addingTimeInterval(0.1) : nil
            fleet.devices[canary]?.telemetryAt = start.addingTimeInterval(0.2)
            let f1 = fleet
            _ = RolloutRunner.step(&r, now: start.addingTimeInterval(0.5), observe: { f1.devices[$0] })
            let state = r.devices.first { $0.address == canary }!.state
            #expect(state == (known ? .succeeded : .verifying), "report time known: \(known)")
        }
    }

    @Test("a config devices roll back aborts at the canary and restores the devices that took it")
    func abortAndRollback() {
        var fleet = Fleet(10)
        fleet.devices[fleet.addresses[0]]?.desired = DesiredConfig(version: 7, config: DeviceConfig(maxSessionMinutes: 15))
        var r = Rollout(id: "r2", document: document(), targets: fleet.addresses, createdBy: "t", now: start)
        let (_, actions) = run(&r, &fleet, from: start, reply: { _ in .rolledBack }, until: { $0.state == .aborted })
        #expect(r.state == .aborted)
        #expect(r.devices.filter { $0.wave > 0 }.allSatisfy { $0.state == .pending })
        let writes = actions.compactMap { a -> (DeviceAddress, DesiredConfig)? in if case .writeDesired(let d, let c) = a { return (d, c) }; return nil }
        #expect(writes.count == 2) // the canary, then its previous config back
        #expect(writes[1].1.config == DeviceConfig(maxSessionMinutes: 15))
        #expect(writes[1].1.version > writes[0].1.version && writes[0].1.version > 7)
        #expect(r.devices[0].state == .rolledBack)
    }

    @Test("with action pause the rollout pauses at the threshold and resumes only when told")
    func pauseAtThreshold() {
        var fleet = Fleet(4)
        var r = Rollout(id: "r3", document: document { $0.errorThreshold = .init(percent: 50, minExecuted: 1, action: "pause") },
                        targets: fleet.addresses, createdBy: "t", now: start)
        _ = run(&r, &fleet, from: start, reply: { _ in .rejected }, until: { $0.state == .paused })
        #expect(r.state == .paused)
        #expect(r.reason?.contains("1 of 1 executed devices failed") == true)
        let f = fleet
        let more = RolloutRunner.step(&r, now: start.addingTimeInterval(500), observe: { f.devices[$0] })
        #expect(more.isEmpty)
    }

    @Test("a device in a session is deferred, then applies; a closed maintenance window holds the rollout until it opens")
    func deferredAndWindow() {
        var fleet = Fleet(2)
        // Window 22:00–06:00 Berlin; start is 09:00 Berlin on a Friday.
        var r = Rollout(id: "r4", document: document { $0.maintenanceWindow = .init(days: RolloutDocument.days, start: "22:00", end: "06:00") },
                        targets: fleet.addresses, createdBy: "t", now: start)
        let f = fleet
        let closed = RolloutRunner.step(&r, now: start, observe: { f.devices[$0] })
        #expect(r.state == .waitingWindow)
        #expect(closed.allSatisfy { if case .writeDesired = $0 { return false }; return true })
        // 13 hours later it is 22:00 in Berlin: the canary is written, but it is in a session.
        let evening = start.addingTimeInterval(13 * 3600)
        var deferred = true
        let (_, _) = run(&r, &fleet, from: evening, steps: 5, reply: { _ in deferred ? .pending : .applied }, until: { _ in false })
        #expect(r.devices[0].state == .deferred)
        deferred = false
        // The session ended: the device now reports the version applied.
        let v = r.devices[0].version!
        fleet.devices[r.devices[0].address!]?.reported = ReportedConfig(version: v, state: .applied, appliedVersion: v)
        _ = run(&r, &fleet, from: evening.addingTimeInterval(10), until: { $0.state == .completed })
        #expect(r.state == .completed)
        #expect(r.devices.allSatisfy { $0.state == .succeeded })
    }

    @Test("an offline device does not hold its wave past the timeout and is retried when it returns")
    func offlineDevice() {
        var fleet = Fleet(3)
        let away = fleet.addresses[1]
        fleet.devices[away]?.online = false
        var r = Rollout(id: "r5", document: document { $0.waves = .init(canary: 1, percentages: [100]); $0.bakeSeconds = 0; $0.applyTimeoutSeconds = 20 },
                        targets: fleet.addresses, createdBy: "t", now: start)
        let (now, _) = run(&r, &fleet, from: start, until: { $0.state == .completed })
        #expect(r.state == .completed)
        #expect(r.devices.first { $0.address == away }?.state == .offline)
        fleet.devices[away]?.online = true
        _ = run(&r, &fleet, from: now, until: { r in r.devices.allSatisfy { $0.state == .succeeded } })
        #expect(r.devices.allSatisfy { $0.state == .succeeded })
    }

    @Test("a desired config whose publish was lost (the coordinator died before sending it) is written again with the same version, then the rollout goes on")
    func lostWriteIsRepeated() {
        var fleet = Fleet(1)
        var r = Rollout(id: "r", document: document { $0.waves = .init(canary: 1, percentages: [100]) }, targets: fleet.addresses, createdBy: "t", now: start)
        let device = fleet.addresses[0]
        // The first write never reaches the broker: the device sees nothing.
        let first = RolloutRunner.step(&r, now: start, observe: { fleet.devices[$0] })
        let written = first.compactMap { action -> DesiredConfig? in if case .writeDesired(_, let d) = action { return d } else { return nil } }
        #expect(written.count == 1)
        var now = start
        var rewrites: [DesiredConfig] = []
        for _ in 0..<12 {  // 6 s in half-second steps
            now = now.addingTimeInterval(0.5)
            for case .writeDesired(let a, let d) in RolloutRunner.step(&r, now: now, observe: { fleet.devices[$0] }) where a == device { rewrites.append(d) }
        }
        #expect(rewrites.count == 1, "written again once after \(RolloutRunner.rewriteAfter) s, not every step: \(rewrites)")
        #expect(rewrites.first == written.first, "the same version and config")
        // Once it lands, the device applies it and the rollout completes.
        fleet.answer(rewrites.map { .writeDesired(device, $0) }, now: now)
        let (_, later) = run(&r, &fleet, from: now) { $0.state == .completed }
        #expect(r.state == .completed, "\(r)")
        #expect(later.allSatisfy { if case .writeDesired = $0 { return false } else { return true } }, "nothing written again once seen")
    }

    @Test("a bad document is refused with every reason, the config checked against the engine's limits")
    func validation() {
        let bad = document {
            $0.name = " "
            $0.waves = .init(canary: 0, percentages: [50, 40], factor: 2)
            $0.errorThreshold = .init(percent: 150, minExecuted: 0, action: "explode")
            $0.maintenanceWindow = .init(days: ["funday"], start: "25:00", end: "06:00")
            $0.config = DeviceConfig(maxSessionMinutes: 30, pressureCeilingMMHg: ["shin": 900])
        }
        let problems = bad.problems(builtins: ProgramLibrary())
        for key in ["name", "waves.canary", "waves:", "error_threshold.percent", "error_threshold.min_executed", "error_threshold.action",
                    "maintenance_window.days", "maintenance_window.start", "config."] {
            #expect(problems.contains { $0.hasPrefix(key) }, "no problem for \(key) in \(problems)")
        }
    }
}
