import Foundation
import MassageEngine
import Testing

@Suite("Pain lockout and latched faults")
struct PainLockoutTests {
    /// A session on the calf (SP6), pressed until the pain button aborts it.
    func hurt(_ configuration: EngineConfiguration = EngineConfiguration()) throws -> Harness {
        let h = try Harness(configuration: configuration)
        try h.engine.start(.program("calf-release"))
        h.run(seconds: 40)
        h.simulator.inject(.painButton)
        h.tick()
        h.simulator.clear(.painButton)
        h.tick()
        #expect(h.journal.abortReasons == [.painSignal])
        return h
    }

    @Test("after a pain_signal abort, remote and scheduled starts are refused unsafe for 120 s with the seconds left and where it hurt; a start at the device is allowed")
    func lockout() throws {
        let h = try hurt()
        let refused = #expect(throws: EngineError.self) { try h.engine.start(.program("calf-release")) }
        #expect(refused?.code == .unsafe)
        #expect(refused?.unsafeReason == .painLockout)
        #expect(refused?.message.contains("SP6 (calf)") == true)
        #expect(refused?.message.contains("120 s more") == true, "\(refused?.message ?? "")")
        let t = h.engine.telemetry()
        #expect(t.painLockout?.zone == .calf)
        #expect(t.painLockout?.point == .sp6)
        #expect(t.unsafeReason == .painLockout)

        // 100 s later: still refused, with the time left.
        h.run(seconds: 100)
        let later = #expect(throws: EngineError.self) { try h.engine.start(.program("calf-release")) }
        #expect(later?.message.contains("20 s more") == true, "\(later?.message ?? "")")
        // A schedule that would run inside the lockout is refused too.
        #expect(throws: EngineError.self) { try h.engine.schedule(.program("calf-release"), at: h.clock.now().addingTimeInterval(5)) }

        // The person at the device may start (they are there).
        let local = try h.engine.start(.program("sole-vitality", origin: .local))
        #expect(h.engine.telemetry().sessionID == local)
        try h.engine.stop()
        h.runUntilIdle()

        // After the lockout, remote starts are accepted again.
        h.run(seconds: 21)
        #expect(h.engine.telemetry().painLockout == nil)
        try h.engine.start(.program("calf-release"))
    }

    @Test("a schedule due during a pain lockout is missed unsafe, not started")
    func scheduleDuringLockout() throws {
        let h = try Harness()
        let booked = try h.engine.schedule(.program("sole-vitality"), at: h.clock.now().addingTimeInterval(300))
        h.run(seconds: 200)
        try h.engine.start(.steps([step("thigh", "kneading", 4, 50)], origin: .local))
        h.run(seconds: 5)
        h.simulator.inject(.painButton)
        h.tick()
        h.simulator.clear(.painButton)
        h.run(seconds: 100)  // the booking falls due 95 s into the 120 s lockout
        #expect(h.journal.events.contains { $0.kind == .sessionMissed(scheduleID: booked.id, at: booked.at, why: .unsafe) })
        #expect(h.engine.telemetry().state == .idle)
    }

    @Test("configuration may lengthen the pain lockout but never shorten it below 120 s")
    func lockoutConfiguration() throws {
        let short = #expect(throws: EngineLimitsError.self) { try EngineLimits(painLockoutSeconds: 30) }
        #expect(short?.problems.first?.key == "pain_lockout_s")
        #expect(short?.description.contains("compiled minimum of 120 s") == true)
        let long = try EngineLimits(painLockoutSeconds: 600)
        let h = try hurt(EngineConfiguration(limits: long))
        h.run(seconds: 300)
        let refused = #expect(throws: EngineError.self) { try h.engine.start(.program("calf-release")) }
        #expect(refused?.unsafeReason == .painLockout)
    }

    @Test("a restart lifts neither a pain lockout nor a latched fault")
    func survivesRestart() throws {
        let h = try hurt()
        h.simulator.inject(.stuckPressureSensor(.arch))
        h.run(seconds: 0.2)
        h.simulator.clear(.stuckPressureSensor(.arch))
        try h.engine.flushPersistence()
        #expect(h.storage.persisted.painLockout?.zone == .calf)
        #expect(h.storage.persisted.latchedFaults.map(\.kind) == [.sensorFault])

        h.clock.advance(by: 30)
        let after = try h.restarted()
        #expect(after.engine.faults.map(\.kind) == [.sensorFault])
        let refused = #expect(throws: EngineError.self) { try after.engine.start(.program("calf-release", origin: .local)) }
        #expect(refused?.unsafeReason == .fault)
        // Healthy for a second, acknowledged: the lockout still holds for remote starts.
        after.run(seconds: 1.1)
        try after.engine.acknowledgeFaults()
        let locked = #expect(throws: EngineError.self) { try after.engine.start(.program("calf-release")) }
        #expect(locked?.unsafeReason == .painLockout)
        // It ends 120 s after the press, counted across the restart.
        after.run(seconds: 90)
        try after.engine.start(.program("calf-release"))
    }
}
