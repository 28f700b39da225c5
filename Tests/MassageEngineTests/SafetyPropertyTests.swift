import Foundation
import MassageEngine
import MassageEngineTesting
import Synchronization
import Testing

/// A seeded, reproducible random run over programs, commands, limits, pain
/// presses and injected hardware faults, checking the safety invariants on
/// every tick (docs/safety.md). A failure prints the seed and the tick.
@Suite("Randomized safety run", .serialized)
struct SafetyPropertyTests {
    static let seeds: [UInt64] = [1, 2, 3]
    static let ticksPerSeed = 110_000

    @Test("on every tick: commanded ≤ ceiling; pain → release in the same tick; measured over the ceiling → abort within the window; no start while locked out or latched; the time limit holds", arguments: seeds)
    func randomizedRun(seed: UInt64) async throws {
        // Seconds of synchronous ticks: on a thread of their own, so Swift's
        // cooperative pool (two threads here) stays free for the other tests.
        let c = try await onOwnThread {
            var run = try RandomRun(seed: seed)
            try run.go(ticks: Self.ticksPerSeed)
            return run.coverage
        }
        print("randomized safety run (seed \(seed)): \(c.ticks) ticks, \(c.sessions) sessions, \(c.presses) pain presses, \(c.faults) injected faults, \(c.aborts) aborts, \(c.refusedStarts) refused starts, \(c.acknowledgements) acknowledgements")
        #expect(c.ticks == Self.ticksPerSeed)
        #expect(c.presses >= 50, "the run must press the pain button often")
        #expect(c.faults >= 100, "the run must inject faults often")
        #expect(c.sessions >= 80)
        #expect(c.refusedStarts >= 50, "lockouts and latches must be exercised")
    }
}

private final class AbortCounter: Sendable {
    let count = Atomic<Int>(0)
}

/// What the massager saw during one tick.
private final class TickLog: MassagerHardware {
    let simulator: SimulatedMassager
    enum Call: Equatable { case apply(ActuatorCommand), release }
    struct State {
        var reading = SensorReadings()
        var calls: [Call] = []
    }
    let state = Mutex(State())

    init(_ simulator: SimulatedMassager) { self.simulator = simulator }

    func read(engineTime: Double) -> SensorReadings {
        let r = simulator.read(engineTime: engineTime)
        state.withLock { $0 = State(reading: r, calls: []) }
        return r
    }

    func apply(_ command: ActuatorCommand) {
        state.withLock { $0.calls.append(.apply(command)) }
        simulator.apply(command)
    }

    func releaseAll() {
        state.withLock { $0.calls.append(.release) }
        simulator.releaseAll()
    }
}

private struct RandomRun {
    struct Coverage: Sendable { var ticks = 0, sessions = 0, presses = 0, faults = 0, aborts = 0, refusedStarts = 0, acknowledgements = 0 }

    var rng: SplitMix64
    let seed: UInt64
    let clock = ManualClock()
    let simulator: SimulatedMassager
    let log: TickLog
    let engine: MassageEngine
    let programs: ProgramLibrary
    var limits = EngineLimits.default
    var coverage = Coverage()
    var overHistory = ZoneValues<[Bool]>(repeating: [])
    var pressTicksLeft = 0
    var activeFaults: [(fault: SimulatedFault, ticksLeft: Int)] = []
    var sessionTicks = 0
    let aborts = AbortCounter()

    init(seed: UInt64) throws {
        self.seed = seed
        rng = SplitMix64(seed: seed)
        simulator = SimulatedMassager(seed: seed)
        log = TickLog(simulator)
        programs = try Harness.builtIns()
        let aborts = aborts
        engine = try MassageEngine(programs: programs, hardware: log, clock: clock, storage: InMemoryEngineStorage(),
                                   eventObserver: { if $0.abortReason != nil { aborts.count.add(1, ordering: .relaxed) } })
    }

    mutating func chance(_ p: Double) -> Bool { Double(rng.next() >> 11) * 0x1.0p-53 < p }
    mutating func pick<T>(_ items: [T]) -> T { items[Int(rng.next() % UInt64(items.count))] }
    mutating func int(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(rng.next() % UInt64(range.count)) }

    func fail(_ what: String) {
        Issue.record("seed \(seed), tick \(coverage.ticks): \(what)")
    }

    mutating func go(ticks: Int) throws {
        for _ in 0..<ticks {
            act()
            clock.advance(by: 0.02)
            engine.tick()
            coverage.ticks += 1
            check()
            if coverage.ticks % 500 == 0 { try engine.flushPersistence() }
        }
    }

    // MARK: - Random actions between ticks

    mutating func act() {
        let t = engine.telemetry()
        if t.state == .idle {
            sessionTicks = 0
            if chance(0.05) { tryStart(t) }
            if chance(0.002) { changeLimits() }
        } else {
            if chance(0.002) { try? engine.adjustIntensity(int(1...10)) }
            if chance(0.001) { try? engine.pause() }
            if chance(0.002) { try? engine.resume() }
            if chance(0.0005) { try? engine.stop() }
            if pressTicksLeft == 0, chance(0.004) {
                pressTicksLeft = int(1...10)
                simulator.inject(.painButton)
                coverage.presses += 1
            }
            if chance(0.0003) { engine.controlLoopLate(milliseconds: Double(int(20...200))) }
        }
        if pressTicksLeft > 0 {
            pressTicksLeft -= 1
            if pressTicksLeft == 0 { simulator.clear(.painButton) }
        }
        if activeFaults.count < 2, chance(0.0015) { injectFault() }
        for i in activeFaults.indices.reversed() {
            activeFaults[i].ticksLeft -= 1
            if activeFaults[i].ticksLeft <= 0 {
                simulator.clear(activeFaults[i].fault)
                activeFaults.remove(at: i)
            }
        }
        if !t.faults.isEmpty, chance(0.02) {
            if (try? engine.acknowledgeFaults()) != nil { coverage.acknowledgements += 1 }
        }
    }

    mutating func tryStart(_ t: TelemetrySnapshot) {
        let origin: SessionRequest.Origin = chance(0.5) ? .local : .remote
        let request: SessionRequest
        if chance(0.15) {
            request = .program(pick(programs.ids), intensity: chance(0.5) ? int(1...10) : nil, origin: origin)
        } else {
            let targets = ["thigh", "calf", "shin", "achilles", "heel", "arch", "gb34", "sp6", "ki1"]
            let techniques = ["compression", "circular", "kneading", "rolling", "tapping", "shiatsu"]
            let steps = (0..<int(1...4)).map { _ in step(pick(targets), pick(techniques), int(1...10), int(5...40)) }
            request = .steps(steps, intensity: chance(0.3) ? int(1...10) : nil, origin: origin)
        }
        // What the engine says before the attempt: a refusal must hold.
        let lockedOut = origin == .remote && t.painLockout != nil
        let latched = !t.faults.isEmpty || simulator.snapshot().faults.contains(.painButton)
        do {
            try engine.start(request)
            coverage.sessions += 1
            if lockedOut { fail("a remote start was accepted during a pain lockout") }
            if latched { fail("a start was accepted with a fault active: \(t.faults)") }
        } catch {
            if error.code == .unsafe { coverage.refusedStarts += 1 }
        }
    }

    mutating func changeLimits() {
        var ceilings: [Zone: Double] = [:]
        for zone in Zone.allCases where chance(0.3) {
            ceilings[zone] = HardLimits.ceiling(zone) * Double(int(5...10)) / 10
        }
        if let new = try? EngineLimits(ceilingsMMHg: ceilings, maxSessionMinutes: int(1...30)), (try? engine.replaceLimits(new)) != nil {
            limits = new
            // The built-in programs are validated against the limits in force at start.
        }
    }

    mutating func injectFault() {
        let zone = pick(Zone.allCases)
        let fault: SimulatedFault
        switch int(0...9) {
        case 0: fault = .pressureSpike(zone: zone, mmHg: Double(int(20...120)), reads: int(1...8))
        case 1: fault = .stuckPressureSensor(zone)
        case 2: fault = .implausiblePressure(zone)
        case 3: fault = .stuckTemperatureSensor
        case 4: fault = .actuatorFailure(zone)
        case 5: fault = .stuckDumpValve
        case 6: fault = .runawayPump(zone: zone, mmHgPerSecond: Double(int(20...200)))
        case 7: fault = .frozenPressureSensor(zone)
        case 8: fault = .slowVent(timeConstantSeconds: Double(int(1...3)))
        default: fault = .overheating(celsiusPerSecond: Double(int(1...5)))
        }
        simulator.inject(fault)
        activeFaults.append((fault, int(1...400)))
        coverage.faults += 1
    }

    // MARK: - Invariants after each tick

    mutating func check() {
        let tick = log.state.withLock { $0 }
        let t = engine.telemetry()

        // Nothing commanded ever exceeds a zone's ceiling (the one in force, and the hard one).
        for call in tick.calls {
            guard case .apply(let command) = call else { continue }
            for zone in Zone.allCases {
                let p = command.pressuresMMHg[zone]
                if !(p <= limits.ceiling(zone) * HardLimits.setpointShareOfCeiling + 1e-9) || !(p <= HardLimits.ceiling(zone)) {
                    fail("commanded \(p) mmHg on the \(zone) over its ceiling \(limits.ceiling(zone))")
                }
            }
        }

        // Pain: released in the same tick, nothing commanded in it, no session after it.
        if tick.reading.stopButtonPressed {
            if tick.calls.first != .release { fail("the pain button was read but the tick's first hardware call was \(String(describing: tick.calls.first))") }
            if tick.calls.contains(where: { if case .apply = $0 { true } else { false } }) { fail("a command was applied in the tick that read the pain button") }
            if t.state != .idle { fail("a session runs after the pain button was read") }
        }

        // Measured over the ceiling on more than 2 of the last 10 readings → no session.
        var over = false
        for zone in Zone.allCases {
            var history = overHistory[zone]
            history.append(tick.reading.pressuresMMHg[zone] > limits.ceiling(zone))
            if history.count > HardLimits.overpressureWindowTicks { history.removeFirst() }
            overHistory[zone] = history
            if history.filter({ $0 }).count > HardLimits.overpressureToleratedTicks { over = true }
        }
        if over, t.state != .idle { fail("a session runs although measured pressure was over the ceiling on more than 2 of the last 10 readings") }

        // The time limit: pauses and the soft stop included.
        if t.state != .idle {
            sessionTicks += 1
            let bound = (limits.maxSessionSeconds + Int(HardLimits.maxSoftStopSeconds.rounded(.up))) * 50 + 1
            if sessionTicks > bound { fail("a session ran \(sessionTicks) ticks, over the time limit") }
        }
        coverage.aborts = aborts.count.load(ordering: .relaxed)
    }
}

/// Runs `body` on a new thread and returns its result without holding a
/// thread of Swift's cooperative pool meanwhile.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (done: CheckedContinuation<T, any Error>) in
        Thread {
            do { done.resume(returning: try body()) } catch { done.resume(throwing: error) }
        }.start()
    }
}
