import Foundation
import MassageEngine
import Testing

@Suite("Session runner")
struct SessionRunnerTests {
    @Test("every built-in program runs to completion in the simulator", arguments: Harness.builtInIDs)
    func builtInRunsToCompletion(id: String) throws {
        let h = try Harness()
        let program = try #require(h.engine.programs[id])
        let sessionID = try h.engine.start(.program(id))

        var peak = ZoneValues<Double>(repeating: 0)
        let totalTicks = program.totalSeconds * 50
        for _ in 0..<(totalTicks + 10) {
            h.tick()
            let truth = h.simulator.snapshot().pressuresMMHg
            for zone in Zone.allCases { peak[zone] = max(peak[zone], truth[zone]) }
        }

        #expect(h.engine.telemetry().state == .idle)
        #expect(h.journal.types.first == "session_started")
        #expect(h.journal.types.last == "session_completed")
        #expect(h.journal.types.filter { $0 == "session_step" }.count == program.steps.count)
        #expect(!h.journal.types.contains("session_aborted"))
        #expect(!h.journal.types.contains("fault_raised"))
        #expect(h.journal.events.allSatisfy { $0.sessionID == sessionID && $0.programID == id })
        // Never over a ceiling, and every zone the program works was pressed.
        for zone in Zone.allCases {
            #expect(peak[zone] <= HardLimits.ceiling(zone), "\(zone)")
        }
        for zone in Set(program.steps.map(\.zone)) {
            #expect(peak[zone] > 5, "\(zone) was never pressed")
        }
        // Usage is exactly the program's duration.
        let usage = h.engine.usage()
        #expect(usage.sessionsStarted == 1)
        #expect(usage.sessionsCompleted == 1)
        #expect(usage.milliseconds.byProgram[id] == Int64(program.totalSeconds) * 1000)
        #expect(usage.milliseconds.byZone.values.reduce(0, +) == Int64(program.totalSeconds) * 1000)
    }

    @Test("soft start ramps pressure up instead of jumping to the target")
    func softStart() throws {
        let h = try Harness()
        try h.engine.start(.steps([step("thigh", "compression", 10, 60)]))
        h.tick()
        let first = h.simulator.snapshot().command.pressuresMMHg.thigh
        #expect(first > 0)
        #expect(first <= HardLimits.rampUpMMHgPerSecond * 0.02 + 1e-9)
        h.run(seconds: 2)
        let twoSeconds = h.simulator.snapshot().command.pressuresMMHg.thigh
        #expect(abs(twoSeconds - 2.02 * HardLimits.rampUpMMHgPerSecond) < 1)
        h.run(seconds: 4)
        // Level 10 is the ceiling; the final clamp keeps commands at 95 % of
        // it, below the overpressure trip at the ceiling itself.
        #expect(h.simulator.snapshot().command.pressuresMMHg.thigh == 180 * HardLimits.setpointShareOfCeiling)
    }

    @Test("a session ends with a soft ramp to zero inside its last step")
    func softEnd() throws {
        let h = try Harness()
        try h.engine.start(.steps([step("calf", "compression", 5, 10)]))
        h.run(seconds: 8)
        #expect(abs(h.simulator.snapshot().command.pressuresMMHg.calf - 80) < 1e-9)
        h.run(seconds: 1)  // 1 s before the end: two-thirds of the 1.5 s ramp left
        let ramping = h.simulator.snapshot().command.pressuresMMHg.calf
        #expect(ramping > 40 && ramping < 80)
        h.run(seconds: 1)
        #expect(h.journal.types.last == "session_completed")
        #expect(h.engine.usage().milliseconds.byZone["calf"] == 10_000)
        h.run(seconds: 0.1)
        #expect(h.simulator.snapshot().pressuresMMHg.calf < 1)
    }

    @Test("stop is a soft stop that releases within 2 seconds and aborts remote_stop")
    func softStop() throws {
        let h = try Harness()
        try h.engine.start(.steps([step("thigh", "compression", 10, 300)]))
        h.run(seconds: 10)
        #expect(h.simulator.snapshot().pressuresMMHg.thigh > 170)
        try h.engine.stop()
        var ticks = 0
        while h.engine.telemetry().state != .idle, ticks < 500 {
            h.tick()
            ticks += 1
            // No jump: each tick lowers the command by at most the ramp rate.
        }
        #expect(Double(ticks) * 0.02 <= HardLimits.maxSoftStopSeconds)
        #expect(ticks > 10, "a soft stop ramps, it does not dump")
        #expect(h.journal.abortReasons == [.remoteStop])
        #expect(h.engine.usage().aborted(.remoteStop) == 1)
        h.tick()
        #expect(h.simulator.snapshot().pressuresMMHg.thigh < 1)
    }

    @Test("pause releases pressure and freezes the step; resume continues where it was")
    func pauseAndResume() throws {
        let h = try Harness()
        try h.engine.start(.steps([step("calf", "compression", 5, 60)]))
        h.run(seconds: 20)
        try h.engine.pause()
        #expect(h.journal.types.last == "session_paused")
        h.run(seconds: 120)
        let paused = h.engine.telemetry()
        #expect(paused.state == .paused)
        #expect(abs((paused.stepRemainingSeconds ?? 0) - 40) < 0.05)
        #expect(h.simulator.snapshot().pressuresMMHg.calf < 1)
        try h.engine.resume()
        #expect(h.journal.types.last == "session_resumed")
        h.run(seconds: 39)
        #expect(h.engine.telemetry().state == .running)
        h.run(seconds: 1.1)
        #expect(h.engine.telemetry().state == .idle)
        #expect(h.journal.types.last == "session_completed")
        // Paused time is not massage time.
        #expect(h.engine.usage().milliseconds.byZone["calf"] == 60_000)
    }

    @Test("intensity can be adjusted during a session within the ceilings")
    func adjustIntensity() throws {
        let h = try Harness()
        try h.engine.start(.steps([step("calf", "compression", 3, 60), step("achilles", "rolling", 2, 60)]))
        h.run(seconds: 5)
        try h.engine.adjustIntensity(8)
        h.run(seconds: 10)
        #expect(h.engine.telemetry().intensity == 8)
        #expect(abs(h.simulator.snapshot().command.pressuresMMHg.calf - 128) < 1e-9)
        // Out of range is refused.
        #expect(throws: EngineError.self) { try h.engine.adjustIntensity(11) }
        // The next step keeps its place in the program's profile: level 2
        // written where 3 was raised to 8 runs at 2 × 8/3 ≈ 5, not at 8.
        h.run(seconds: 46)
        let telemetry = h.engine.telemetry()
        #expect(telemetry.step?.zone == .achilles)
        #expect(telemetry.intensity == 5)
        #expect(telemetry.targetPressureMMHg == 30)
    }

    @Test("a calibration step stays at level 3 or below whatever is adjusted, from the device or the console")
    func calibrationStaysGentle() throws {
        let h = try Harness()
        try h.engine.start(.program("calf-release"))  // step 0: SP6 calibration at level 2
        h.run(seconds: 2)
        let error = #expect(throws: EngineError.self) { try h.engine.adjustIntensity(10) }
        #expect(error?.code == .invalidParams)
        #expect(error?.message.contains("calibration step") == true)
        #expect(h.engine.telemetry().intensity == 2)
        try h.engine.adjustIntensity(3)
        #expect(h.engine.telemetry().intensity == 3)
    }

    @Test("an adjustment over what the current step allows is refused with the highest level")
    func adjustOverLimit() throws {
        let h = try Harness()
        try h.engine.start(.steps([step("shin", "compression", 2, 60)]))
        let error = #expect(throws: EngineError.self) { try h.engine.adjustIntensity(6) }
        #expect(error?.code == .invalidParams)
        #expect(error?.message.contains("limited to level 4") == true)
        try h.engine.adjustIntensity(4)
        #expect(h.engine.telemetry().intensity == 4)
    }

    @Test("a session-wide intensity scales the program's profile: gentle start and cool-down stay gentler than the peak, calibration is never raised, GB34 stays gentle")
    func sessionIntensity() throws {
        func levels(_ program: String, _ intensity: Int) throws -> [Int] {
            let h = try Harness()
            try h.engine.start(.program(program, intensity: intensity))
            h.runUntilIdle()
            return h.journal.events.compactMap { if case .sessionStep(_, _, let level) = $0.kind { return level } else { return nil } }
        }
        // calf-release is written 2 (calibration), 4, 5, 5, 3: its peak 5 becomes 9,
        // every other step by the same ratio 9/5; calibration stays at 2.
        #expect(try levels("calf-release", 9) == [2, 7, 9, 9, 5])
        // Gentler than written: the cool-down stays below the peak.
        #expect(try levels("calf-release", 2) == [1, 2, 2, 2, 1])
        // GB34: the brief's "gentle pressure" caps every technique at level 4 there.
        #expect(try levels("knee-leg-relief", 9) == [2, 4, 4, 4, 4])
    }

    @Test("telemetry reports the step, its zone and point, pressure, temperature and breathing cue")
    func telemetrySnapshot() throws {
        let h = try Harness()
        let idle = h.engine.telemetry()
        #expect(idle.state == .idle)
        #expect(idle.sessionID == nil)
        let id = try h.engine.start(.program("calf-release"))
        h.run(seconds: 45)
        let t = h.engine.telemetry()
        #expect(t.state == .running)
        #expect(t.sessionID == id)
        #expect(t.programID == "calf-release")
        #expect(t.stepIndex == 1)
        #expect(t.stepCount == 5)
        #expect(t.step?.target == .point(.sp6))
        #expect(t.step?.zone == .calf)
        #expect(t.step?.technique == .kneading)
        #expect(t.intensity == 4)
        #expect(t.targetPressureMMHg == 64)
        #expect(t.breathingBPM == 6)
        #expect(t.pressuresMMHg.keys.sorted() == ["calf"])
        #expect((t.pressuresMMHg["calf"] ?? 0) > 20)
        #expect(t.motorTemperatureC > 24 && t.motorTemperatureC < 40)
        #expect(t.faults.isEmpty)
        #expect(abs((t.sessionElapsedSeconds ?? 0) - 45) < 0.05)
    }

    @Test("ad-hoc steps run as program custom; invalid ones are refused with every reason")
    func customSteps() throws {
        let h = try Harness()
        let error = #expect(throws: EngineError.self) {
            try h.engine.start(.steps([step("achilles", "tapping", 3, 60), step("calf", "kneading", 0, 60)]))
        }
        #expect(error?.code == .invalidParams)
        #expect(error?.issues.map(\.field) == ["technique", "intensity"])
        try h.engine.start(.steps([step("calf", "kneading", 4, 60)]))
        #expect(h.journal.events.last?.programID == "custom")
        let unknown = #expect(throws: EngineError.self) { try h.engine.start(.program("calf-relase")) }
        #expect(unknown?.code == .invalidParams)
    }

    @Test("stop, pause, resume and adjust without a session are not_found")
    func noSession() throws {
        let h = try Harness()
        for command in [{ try h.engine.stop() }, { try h.engine.pause() }, { try h.engine.resume() }, { try h.engine.adjustIntensity(3) }] {
            let error = #expect(throws: EngineError.self) { try command() }
            #expect(error?.code == .notFound)
        }
    }

    @Test("events reach the async stream in order with session and program ids")
    func eventStream() async throws {
        let h = try Harness()
        let id = try h.engine.start(.steps([step("calf", "compression", 3, 2)]))
        h.run(seconds: 3)
        var seen: [EngineEvent] = []
        for await event in h.engine.events {
            seen.append(event)
            if event.type == "session_completed" { break }
        }
        #expect(seen.map(\.type) == ["session_started", "session_step", "session_completed"])
        #expect(seen.allSatisfy { $0.sessionID == id && $0.programID == "custom" })
    }

    @Test("a slow event consumer loses the oldest events, counted, never blocking the tick")
    func boundedEvents() throws {
        let h = try Harness(configuration: EngineConfiguration(eventBufferSize: 2))
        try h.engine.start(.steps([step("calf", "compression", 3, 1), step("thigh", "compression", 3, 1), step("arch", "compression", 3, 1)]))
        h.run(seconds: 4)
        // started, 3 steps, completed = 5 events; the stream keeps 2.
        #expect(h.journal.events.count == 5)
        #expect(h.engine.telemetry().droppedEvents == 3)
    }
}
