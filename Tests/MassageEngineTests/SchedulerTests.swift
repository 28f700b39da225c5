import Foundation
import MassageEngine
import Testing

@Suite("Scheduler")
struct SchedulerTests {
    @Test("two sessions cannot overlap")
    func noOverlap() throws {
        let h = try Harness()
        let running = try h.engine.start(.program("calf-release"))  // 690 s
        h.run(seconds: 10)

        let second = #expect(throws: EngineError.self) { try h.engine.start(.program("sole-vitality")) }
        #expect(second?.code == .busy)
        #expect(second?.message.contains(running.rawValue) == true)

        // A schedule inside the running session is refused too…
        let during = #expect(throws: EngineError.self) {
            try h.engine.schedule(.program("sole-vitality"), at: h.clock.now().addingTimeInterval(300))
        }
        #expect(during?.code == .busy)
        // …one after it is fine, and a second schedule overlapping the first is refused.
        let later = h.clock.now().addingTimeInterval(3600)
        let booked = try h.engine.schedule(.program("sole-vitality"), at: later)
        let overlap = #expect(throws: EngineError.self) {
            try h.engine.schedule(.program("calf-release"), at: later.addingTimeInterval(60))
        }
        #expect(overlap?.code == .busy)
        #expect(overlap?.message.contains(booked.id.rawValue) == true)
        let before = #expect(throws: EngineError.self) {
            try h.engine.schedule(.program("calf-release"), at: later.addingTimeInterval(-300))  // would end inside it
        }
        #expect(before?.code == .busy)
        try h.engine.schedule(.program("calf-release"), at: booked.end)  // back to back is fine
        #expect(h.engine.schedules().count == 2)
    }

    @Test("a start now that would run into a schedule is refused busy")
    func startIntoSchedule() throws {
        let h = try Harness()
        try h.engine.schedule(.program("sole-vitality"), at: h.clock.now().addingTimeInterval(120))
        let error = #expect(throws: EngineError.self) { try h.engine.start(.program("calf-release")) }
        #expect(error?.code == .busy)
        #expect(error?.message.contains("the slot is taken") == true)
        try h.engine.start(.steps([step("calf", "compression", 3, 60)]))  // ends before it
    }

    @Test("a scheduled session starts at its wall-clock time with the id it was given")
    func runsAtItsTime() throws {
        let h = try Harness()
        let at = h.clock.now().addingTimeInterval(600)
        let booked = try h.engine.schedule(.program("shin-recovery"), at: at)
        #expect(h.journal.types == ["session_scheduled"])
        #expect(h.journal.events.first?.sessionID == booked.sessionID)
        #expect(h.journal.events.first?.programID == "shin-recovery")

        h.run(seconds: 599)
        #expect(h.engine.telemetry().state == .idle)
        h.run(seconds: 1.02)
        let telemetry = h.engine.telemetry()
        #expect(telemetry.state == .running)
        #expect(telemetry.sessionID == booked.sessionID)
        #expect(h.journal.events.contains { $0.kind == .sessionStarted(scheduleID: booked.id) })
        #expect(h.engine.schedules().isEmpty)
        h.runUntilIdle()
        #expect(h.journal.types.last == "session_completed")
    }

    @Test("wall-clock schedules follow the wall clock, not engine time")
    func wallClockNotEngineTime() throws {
        let h = try Harness()
        try h.engine.schedule(.program("calf-release"), at: h.clock.now().addingTimeInterval(3600))
        // An hour of ticks without the wall clock moving (a fast driver) starts nothing.
        h.engine.tick(count: 3600 * 50)
        #expect(h.engine.telemetry().state == .idle)
        h.clock.advance(by: 3600)
        h.engine.tick()
        #expect(h.engine.telemetry().state == .running)
    }

    @Test("cancel removes a schedule; an unknown schedule is not_found")
    func cancel() throws {
        let h = try Harness()
        let booked = try h.engine.schedule(.program("calf-release"), at: h.clock.now().addingTimeInterval(600))
        try h.engine.cancelScheduled(booked.id)
        #expect(h.engine.schedules().isEmpty)
        h.run(seconds: 700)
        #expect(!h.journal.types.contains("session_started"))
        let error = #expect(throws: EngineError.self) { try h.engine.cancelScheduled(booked.id) }
        #expect(error?.code == .notFound)
        #expect(error?.message.contains(booked.id.rawValue) == true)
    }

    @Test("a schedule in the past is refused as invalid_params")
    func pastTime() throws {
        let h = try Harness()
        let error = #expect(throws: EngineError.self) {
            try h.engine.schedule(.program("calf-release"), at: h.clock.now().addingTimeInterval(-60))
        }
        #expect(error?.code == .invalidParams)
        #expect(error?.message.contains("in the past") == true)
    }

    @Test("schedules persist and survive a restart")
    func persistAcrossRestart() throws {
        let h = try Harness()
        let booked = try h.engine.schedule(.program("plantar-relief", intensity: 3), at: h.clock.now().addingTimeInterval(900))
        try h.engine.flushPersistence()
        #expect(h.storage.persisted.schedules == [booked])

        let after = try h.restarted()
        #expect(after.engine.schedules() == [booked])
        after.run(seconds: 901)
        #expect(after.engine.telemetry().sessionID == booked.sessionID)
        #expect(after.engine.telemetry().programID == "plantar-relief")
    }

    @Test("every schedule due while the device was off is reported missed at start-up, even within the grace period; none starts at boot")
    func missedWhileOff() throws {
        let h = try Harness(configuration: EngineConfiguration(scheduleGracePeriod: .seconds(120)))
        let early = try h.engine.schedule(.program("calf-release"), at: h.clock.now().addingTimeInterval(600))
        let late = try h.engine.schedule(.program("sole-vitality"), at: h.clock.now().addingTimeInterval(1800))
        let future = try h.engine.schedule(.program("shin-recovery"), at: h.clock.now().addingTimeInterval(7200))
        try h.engine.flushPersistence()

        // Off for 31 min: the first is 21 min overdue, the second 1 min (within grace).
        h.clock.advance(by: 1860)
        let after = try h.restarted(configuration: EngineConfiguration(scheduleGracePeriod: .seconds(120)))
        #expect(after.journal.types == ["session_missed", "session_missed"])
        #expect(after.journal.events.map(\.kind) == [
            .sessionMissed(scheduleID: early.id, at: early.at, why: .late),
            .sessionMissed(scheduleID: late.id, at: late.at, why: .late),
        ])
        #expect(after.storage.persisted.schedules == [future])

        // Nobody may be seated after a power cut: nothing starts by itself.
        after.run(seconds: 5)
        #expect(after.engine.telemetry().state == .idle)
        #expect(after.engine.schedules() == [future])
    }

    @Test("a schedule whose time comes while the device is unsafe is missed, not run")
    func dueWhileUnsafe() throws {
        let h = try Harness()
        let booked = try h.engine.schedule(.program("calf-release"), at: h.clock.now().addingTimeInterval(60))
        h.run(seconds: 30)
        h.simulator.inject(.actuatorFailure(.thigh))
        h.run(seconds: 31)
        #expect(h.journal.events.contains { $0.kind == .sessionMissed(scheduleID: booked.id, at: booked.at, why: .unsafe) })
        #expect(h.engine.telemetry().state == .idle)
    }

    @Test("an unsafe device refuses a start with why")
    func unsafeRefusal() throws {
        let h = try Harness()
        h.simulator.inject(.stuckPressureSensor(.shin))
        h.run(seconds: 0.2)
        let error = #expect(throws: EngineError.self) { try h.engine.start(.program("calf-release")) }
        #expect(error?.code == .unsafe)
        #expect(error?.unsafeReason == .fault)
        #expect(error?.message.contains("sensor_fault(shin)") == true)
    }
}
