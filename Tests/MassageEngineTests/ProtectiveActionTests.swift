import Foundation
@testable import MassageEngine
import MassageEngineTesting
import Testing

/// Every protective action is checked: the trip sits at the ceiling, every
/// command is clamped, a release must make pressure fall, measured must
/// follow commanded, and the control loop is itself watched.
@Suite("Protective actions are monitored")
struct ProtectiveActionTests {
    func pressing(recordHardware: Bool = false) throws -> Harness {
        try Harness.pressing(recordHardware: recordHardware)
    }

    func releases(_ h: Harness) -> Int { h.journal.all.filter { $0 == .release }.count }

    @Test("overpressure trips at the ceiling itself: 4 mmHg over it for three readings aborts")
    func tripAtCeiling() throws {
        let h = try pressing()
        // 144 + 40 = 184 mmHg: over the 180 mmHg ceiling, under the old trip at 190.
        h.simulator.inject(.pressureSpike(zone: .thigh, mmHg: 40, reads: 100))
        h.ticks(3)
        #expect(h.journal.abortReasons == [.overpressure])
        #expect(h.engine.faults.map(\.kind) == [.overpressure])
    }

    @Test("spikes over the ceiling with low readings between them still trip: the count is over a sliding window")
    func slidingWindow() throws {
        let h = try pressing()
        for _ in 0..<3 {
            h.simulator.inject(.pressureSpike(zone: .thigh, mmHg: 60, reads: 1))
            h.tick()
            h.tick()  // one low reading between spikes
        }
        #expect(h.journal.abortReasons == [.overpressure])
    }

    @Test("every command reaches the hardware through the final clamp: at most 95 % of the ceiling in force, finite, duty within 0…1")
    func finalClamp() throws {
        let lowered = try EngineLimits(ceilingsMMHg: [.calf: 100])
        // The clamp itself, on commands no session would produce.
        var wild = ActuatorCommand.idle
        wild.pressuresMMHg.thigh = 500
        wild.pressuresMMHg.calf = 99
        wild.pressuresMMHg.shin = .nan
        wild.pressuresMMHg.heel = -20
        wild.pressuresMMHg.arch = .infinity
        wild.motorDuty = 3
        let safe = SafetySupervisor.clamp(wild, limits: lowered)
        #expect(safe.pressuresMMHg.thigh == 171)
        #expect(safe.pressuresMMHg.calf == 95)
        #expect(safe.pressuresMMHg.shin == 0)
        #expect(safe.pressuresMMHg.heel == 0)
        #expect(safe.pressuresMMHg.arch == 0)
        #expect(safe.motorDuty == 1)

        // And a real session at level 10 on every zone that allows it: no
        // apply ever goes over the clamp.
        let h = try Harness(recordHardware: true)
        try h.engine.start(.steps([step("thigh", "compression", 10, 20), step("calf", "kneading", 10, 20), step("arch", "shiatsu", 10, 20)]))
        h.runUntilIdle()
        let applied = h.journal.all.compactMap { if case .apply(let c) = $0 { return c } else { return nil } }
        #expect(applied.count > 2000)
        for command in applied {
            for zone in Zone.allCases {
                #expect(command.pressuresMMHg[zone] <= HardLimits.ceiling(zone) * HardLimits.setpointShareOfCeiling + 1e-9)
            }
        }
        #expect(h.journal.abortReasons.isEmpty, "level 10 runs below the trip")
    }

    @Test("a stuck dump valve: the release is checked, release_failed latches as critical, and the engine releases again every tick")
    func stuckDumpValve() throws {
        let h = try pressing(recordHardware: true)
        h.simulator.inject(.stuckDumpValve)
        h.simulator.inject(.painButton)
        h.tick()
        h.simulator.clear(.painButton)
        #expect(h.journal.abortReasons == [.painSignal])
        h.run(seconds: 0.6)
        let faults = h.engine.faults
        #expect(faults.first?.kind == .releaseFailed, "critical first: \(faults)")
        #expect(faults.first?.detail.contains("pressure did not fall after a release") == true)
        let before = releases(h)
        h.ticks(10)
        #expect(releases(h) == before + 10, "released again on every tick")
        let refused = #expect(throws: EngineError.self) { try h.engine.start(.program("calf-release", origin: .local)) }
        #expect(refused?.message.contains("release_failed") == true)
        #expect(throws: EngineError.self) { try h.engine.acknowledgeFaults() }
        // The valve works again: pressure falls, and after a healthy second it can be acknowledged.
        h.simulator.clear(.stuckDumpValve)
        h.run(seconds: 1.2)
        let ack = try h.engine.acknowledgeFaults()
        #expect(ack.cleared.contains { $0.kind == .releaseFailed })
        #expect(h.engine.faults.isEmpty)
    }

    @Test("a slow vent fails the release check")
    func slowVent() throws {
        let h = try pressing()
        h.simulator.inject(.slowVent(timeConstantSeconds: 2))
        try h.engine.stop()
        // The soft stop ramps down, then the valves open; with a blocked vent
        // the cells stay over 10 mmHg for far longer than 0.5 s.
        h.runUntilIdle()
        h.run(seconds: 0.6)
        #expect(h.engine.faults.contains { $0.kind == .releaseFailed })
    }

    @Test("a runaway pump is found because measured leaves what was commanded: pressure_tracking, aborted hardware_fault, before the ceiling is reached")
    func runawayPump() throws {
        let h = try pressing()
        h.simulator.inject(.runawayPump(zone: .thigh, mmHgPerSecond: 60))
        var seconds = 0.0
        while h.engine.telemetry().state != .idle, seconds < 2 {
            h.tick()
            seconds += h.tickSeconds
        }
        #expect(h.journal.abortReasons == [.hardwareFault])
        #expect(h.engine.faults.first?.kind == .pressureTracking)
        #expect(h.engine.faults.first?.detail.contains("runaway pump") == true)
        #expect(!h.journal.events.contains { if case .faultRaised(let f) = $0.kind { f.kind == .overpressure } else { false } })
    }

    @Test("a runaway pump on a zone nobody works, with no session, is found and latched")
    func runawayAtRest() throws {
        let h = try Harness(recordHardware: true)
        h.tick()
        h.simulator.inject(.runawayPump(zone: .heel, mmHgPerSecond: 100))
        h.run(seconds: 0.5)
        #expect(h.engine.faults.map(\.kind).contains(.pressureTracking))
        #expect(h.journal.all.contains(.release))
    }

    @Test("a frozen pressure sensor is found because it stops following the setpoint")
    func frozenSensor() throws {
        let h = try Harness()
        h.tick()
        h.simulator.inject(.frozenPressureSensor(.calf))  // keeps sampling, repeats 0 mmHg
        try h.engine.start(.steps([step("calf", "compression", 6, 120)]))
        h.run(seconds: 4)
        #expect(h.journal.abortReasons == [.hardwareFault])
        #expect(h.engine.faults.first?.detail.contains("frozen sensor") == true)
    }

    @Test("the control loop is watched: more than 5 ticks late with pressure on releases and aborts control_overrun, latched; a late tick at rest is only counted")
    func controlOverrun() throws {
        let idle = try Harness()
        idle.tick()
        idle.engine.controlLoopLate(milliseconds: 500)
        #expect(idle.engine.faults.isEmpty)
        #expect(idle.engine.telemetry().lateTicks == 1)

        let h = try pressing(recordHardware: true)
        h.engine.controlLoopLate(milliseconds: 60)  // three ticks: counted, tolerated
        #expect(h.engine.telemetry().state == .running)
        h.journal.clear()
        h.engine.controlLoopLate(milliseconds: 120)
        #expect(h.journal.all.first == .release)
        #expect(h.journal.abortReasons == [.controlOverrun])
        #expect(h.engine.faults.map(\.kind) == [.controlOverrun])
        #expect(h.engine.telemetry().lateTicks == 2)
        #expect(throws: EngineError.self) { try h.engine.start(.program("calf-release", origin: .local)) }
        h.run(seconds: 1.1)
        try h.engine.acknowledgeFaults()
        try h.engine.start(.program("calf-release"))
    }

    @Test("the session time limit holds in real (monotonic) time when ticks were skipped")
    func timeLimitInRealTime() throws {
        let h = try Harness(configuration: EngineConfiguration(limits: try EngineLimits(maxSessionMinutes: 2)))
        try h.engine.start(.steps([step("calf", "compression", 5, 110)]))
        h.run(seconds: 30)
        // 100 s pass in real time that the ticks never saw.
        h.clock.advanceMonotonic(by: 100)
        h.tick()
        #expect(h.engine.telemetry().state == .stopping)
        h.run(seconds: HardLimits.maxSoftStopSeconds)
        #expect(h.journal.abortReasons == [.timeLimit])
    }
}
