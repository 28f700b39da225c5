import Foundation
import MassageEngine
import Testing

@Suite("Safety supervisor")
struct SafetySupervisorTests {
    func pressing(recordHardware: Bool = false, configuration: EngineConfiguration = EngineConfiguration()) throws -> Harness {
        try Harness.pressing(recordHardware: recordHardware, configuration: configuration)
    }

    @Test("pain signal releases all pressure within one tick")
    func painSignal() throws {
        let h = try pressing(recordHardware: true)
        h.journal.clear()
        h.simulator.inject(.painButton)
        h.tick()
        // The same tick: every actuator released, nothing commanded after, session over.
        let snapshot = h.simulator.snapshot()
        #expect(snapshot.released)
        #expect(snapshot.command == .idle)
        #expect(h.engine.telemetry().state == .idle)
        // By the next reading the air is out of every cell.
        h.tick()
        for zone in Zone.allCases {
            #expect(h.simulator.snapshot().pressuresMMHg[zone] < 1, "\(zone)")
        }
        // Release came before the report.
        let entries = h.journal.all
        let release = try #require(entries.firstIndex(of: .release))
        let abort = try #require(entries.firstIndex { if case .event(let e) = $0 { return e.abortReason == .painSignal } else { return false } })
        #expect(release < abort)
        #expect(!entries[..<abort].contains { if case .apply = $0 { return true } else { return false } })
        #expect(h.engine.usage().aborted(.painSignal) == 1)
    }

    @Test("while the stop button is held no session starts")
    func heldStopButton() throws {
        let h = try Harness()
        h.simulator.inject(.painButton)
        h.tick()
        let error = #expect(throws: EngineError.self) { try h.engine.start(.program("calf-release")) }
        #expect(error?.code == .unsafe)
        #expect(error?.unsafeReason == .fault)
        #expect(error?.message.contains("stop button") == true)
        h.simulator.clear(.painButton)
        h.tick()
        try h.engine.start(.program("calf-release"))
    }

    @Test("pressure over the ceiling for more than two ticks aborts overpressure")
    func overpressure() throws {
        let h = try pressing(recordHardware: true)
        h.simulator.inject(.pressureSpike(zone: .thigh, mmHg: 60, reads: 100))
        h.ticks(2)
        #expect(h.engine.telemetry().state == .running, "two ticks over are tolerated")
        h.journal.clear()
        h.tick()
        #expect(h.engine.telemetry().state == .idle)
        #expect(h.journal.abortReasons == [.overpressure])
        #expect(h.simulator.snapshot().released)
        let entries = h.journal.all
        let release = try #require(entries.firstIndex(of: .release))
        let firstEvent = try #require(entries.firstIndex { if case .event = $0 { return true } else { return false } })
        #expect(release < firstEvent)
        #expect(h.engine.faults.map(\.kind) == [.overpressure])
    }

    @Test("a spike of two ticks does not abort")
    func shortSpike() throws {
        let h = try pressing()
        h.simulator.inject(.pressureSpike(zone: .thigh, mmHg: 60, reads: 2))
        h.run(seconds: 2)
        #expect(h.engine.telemetry().state == .running)
        #expect(h.journal.abortReasons.isEmpty)
    }

    @Test("an overheat locks out until cool")
    func overheatLockout() throws {
        let h = try pressing()
        h.simulator.inject(.overheating(celsiusPerSecond: 3))
        var seconds = 0.0
        while h.engine.telemetry().state != .idle, seconds < 60 {
            h.run(seconds: 0.5)
            seconds += 0.5
        }
        #expect(h.journal.abortReasons == [.overheat])
        #expect(h.simulator.snapshot().released)
        #expect(h.journal.types.contains("fault_raised"))

        // Still over the maximum: refused as over-temperature.
        h.tick()
        let hot = #expect(throws: EngineError.self) { try h.engine.start(.program("calf-release")) }
        #expect(hot?.code == .unsafe)
        #expect(hot?.unsafeReason == .overTemperature)

        // The vent is cleared; the motor cools below its maximum but not yet below the resume threshold.
        h.simulator.clear(.overheating(celsiusPerSecond: 3))
        var cooled = 0
        while h.engine.telemetry().motorTemperatureC >= EngineLimits.default.maxMotorTemperatureC - 1 && cooled < 10_000 {
            h.run(seconds: 1)
            cooled += 1
        }
        let cooling = #expect(throws: EngineError.self) { try h.engine.start(.program("calf-release")) }
        #expect(cooling?.unsafeReason == .cooldown)
        #expect(cooling?.message.contains("resume below 55 °C") == true)
        #expect(throws: EngineError.self) { try h.engine.schedule(.program("calf-release"), at: h.clock.now().addingTimeInterval(3600)) }

        // Below the resume threshold: fault cleared, sessions allowed again.
        while h.engine.telemetry().motorTemperatureC >= EngineLimits.default.motorResumeTemperatureC - 0.5 && cooled < 10_000 {
            h.run(seconds: 1)
            cooled += 1
        }
        h.tick()
        #expect(h.engine.faults.isEmpty)
        #expect(h.journal.types.last == "fault_cleared")
        try h.engine.start(.program("calf-release"))
        #expect(h.engine.usage().aborted(.overheat) == 1)
    }

    @Test("a stuck pressure sensor aborts sensor_fault")
    func stuckSensor() throws {
        let h = try pressing()
        h.simulator.inject(.stuckPressureSensor(.calf))
        h.ticks(4)
        #expect(h.engine.telemetry().state == .running, "a sample may be late for less than 100 ms")
        h.ticks(1)
        #expect(h.engine.telemetry().state == .idle)
        #expect(h.journal.abortReasons == [.sensorFault])
        #expect(h.simulator.snapshot().released)
        #expect(h.engine.faults.first?.zone == .calf)
        // Fresh for a second, the fault stays latched until someone acknowledges it.
        h.simulator.clear(.stuckPressureSensor(.calf))
        h.run(seconds: 1.1)
        #expect(h.engine.faults.map(\.kind) == [.sensorFault])
        #expect(h.engine.telemetry().acknowledgeableFaults.map(\.kind) == [.sensorFault])
        let ack = try h.engine.acknowledgeFaults()
        #expect(ack.cleared.map(\.kind) == [.sensorFault])
        #expect(h.engine.faults.isEmpty)
    }

    @Test("an implausible reading aborts sensor_fault")
    func implausibleReading() throws {
        let h = try pressing()
        h.simulator.inject(.implausiblePressure(.heel))
        h.tick()
        #expect(h.journal.abortReasons == [.sensorFault])
        #expect(h.engine.faults.first?.detail.contains("heel pressure sensor reads -50") == true)
    }

    @Test("a stuck temperature sensor aborts sensor_fault")
    func stuckTemperature() throws {
        let h = try pressing()
        h.simulator.inject(.stuckTemperatureSensor)
        h.run(seconds: 0.2)
        #expect(h.journal.abortReasons == [.sensorFault])
        #expect(h.engine.faults.first?.zone == nil)
    }

    @Test("an actuator failure aborts hardware_fault and stays latched after the hardware stops reporting it, until healthy and acknowledged")
    func actuatorFailure() throws {
        let h = try pressing()
        h.simulator.inject(.actuatorFailure(.calf))
        h.tick()
        #expect(h.journal.abortReasons == [.hardwareFault])
        #expect(h.simulator.snapshot().released)
        let error = #expect(throws: EngineError.self) { try h.engine.start(.program("calf-release")) }
        #expect(error?.code == .unsafe)
        #expect(error?.unsafeReason == .fault)
        #expect(error?.message.contains("hardware_fault(calf)") == true)
        h.simulator.clear(.actuatorFailure(.calf))
        h.tick()
        // The hardware no longer reports it: still latched, nobody has looked.
        #expect(h.journal.types.last != "fault_cleared")
        #expect(throws: EngineError.self) { try h.engine.start(.program("calf-release")) }
        // Acknowledged too early: refused, nothing cleared.
        let early = #expect(throws: EngineError.self) { try h.engine.acknowledgeFaults() }
        #expect(early?.code == .unsafe)
        #expect(early?.message.contains("no fault reads healthy yet") == true)
        h.run(seconds: 1.1)
        #expect(throws: EngineError.self) { try h.engine.start(.program("calf-release")) }
        try h.engine.acknowledgeFaults()
        #expect(h.journal.types.last == "fault_cleared")
        try h.engine.start(.program("calf-release"))
    }

    @Test("a session longer than the maximum is soft-stopped with time_limit")
    func timeLimit() throws {
        let limits = try EngineLimits(maxSessionMinutes: 2)
        let h = try Harness(configuration: EngineConfiguration(limits: limits))
        try h.engine.start(.steps([step("calf", "compression", 5, 100)]))
        h.run(seconds: 30)
        try h.engine.pause()
        h.run(seconds: 60)
        try h.engine.resume()
        h.run(seconds: 29.9)
        #expect(h.engine.telemetry().state == .running)
        h.run(seconds: 0.2)
        #expect(h.engine.telemetry().state == .stopping)
        #expect(h.journal.abortReasons.isEmpty)
        h.run(seconds: HardLimits.maxSoftStopSeconds)
        #expect(h.journal.abortReasons == [.timeLimit])
        #expect(h.engine.usage().milliseconds.byZone["calf"] == 60_000)
    }

    @Test("shutdown releases at once and aborts shutdown; later starts are refused")
    func shutdown() throws {
        let h = try pressing(recordHardware: true)
        h.journal.clear()
        h.engine.shutdown()
        #expect(h.simulator.snapshot().released)
        #expect(h.journal.all.first == .release)
        #expect(h.journal.abortReasons == [.shutdown])
        let error = #expect(throws: EngineError.self) { try h.engine.start(.program("calf-release")) }
        #expect(error?.code == .busy)
    }

    @Test("faults at idle are raised, and cleared by an acknowledgement once healthy, as events without a session")
    func idleFaults() throws {
        let h = try Harness()
        h.tick()
        #expect(throws: EngineError.self) { try h.engine.acknowledgeFaults() }  // nothing to acknowledge: not_found
        h.simulator.inject(.actuatorFailure(.arch))
        h.tick()
        h.simulator.clear(.actuatorFailure(.arch))
        h.run(seconds: 1.1)
        #expect(h.journal.types == ["fault_raised"])
        try h.engine.acknowledgeFaults()
        #expect(h.journal.types == ["fault_raised", "fault_cleared"])
        #expect(h.journal.events.allSatisfy { $0.sessionID == nil })
        #expect(h.engine.usage().sessionsAbortedTotal == 0)
    }
}
