import FleetTestSupport
import Foundation
import MassageEngine
@testable import MassagerLink
import Testing

/// Against the reference controller over Modbus TCP on loopback. Serialized:
/// each test runs real-time threads (a 20 ms engine tick, a controller
/// polling every 2 ms) and the machine is small.
@Suite("Modbus TCP link against the reference controller", .serialized, .tags(.slow))
struct ModbusLinkTests {
    @Test("the driver reads the controller's identity, ceilings and sensors, and its commands reach the cells")
    func readsAndWrites() async throws {
        // This test drives the link by hand between polls, not every 20 ms:
        // a long watchdog keeps a loaded machine's slow polls from tripping it
        // (the watchdog has tests of its own below).
        var options = LinkHarness.options(watchdogMilliseconds: 10_000)
        options.bootCounter = 4242
        let controller = try ReferenceController(options: options)
        defer { controller.stop() }
        let link = try ModbusMassager(settings: LinkHarness.settings(port: controller.port))
        defer { link.close() }
        #expect(link.controller.bootCounter == 4242)
        #expect(link.controller.ceilingsMMHg == HardLimits.ceilingsMMHg)
        #expect(link.controller.watchdogMilliseconds == 10_000)
        let first = link.read(engineTime: 0)
        #expect(first.hardwareFault == nil)
        #expect(!first.stopButtonPressed)
        #expect(first.motorTemperatureC > 15 && first.motorTemperatureC < 35)

        var command = ActuatorCommand.idle
        command.pressuresMMHg.calf = 60
        command.technique = .kneading
        command.motorDuty = 0.5
        link.apply(command)
        try await waitUntil(timeout: .seconds(30), "the controller applied the command") {
            controller.simulator.snapshot().command.pressuresMMHg.calf == 60
        }
        #expect(controller.simulator.snapshot().command.technique == .kneading)
        #expect(controller.simulator.snapshot().command.motorDuty == 0.5)
        // As the engine does: a command every tick (a read with no command
        // since the last one sends the idle release-all).
        let inflated = try await waitForValue(timeout: .seconds(30), "the calf reads about 60 mmHg") { () -> SensorReadings? in
            let r = link.read(engineTime: 0)
            link.apply(command)
            return r.pressuresMMHg.calf > 55 ? r : nil
        }
        #expect(inflated.hardwareFault == nil)
        #expect(inflated.pressureSamples.calf != first.pressureSamples.calf)
        link.releaseAll()
        try await waitUntil(timeout: .seconds(30), "the release reached the controller") { controller.snapshot.released }
        #expect(link.statistics.failures == 0)
        #expect(link.statistics.transactions >= 4)
    }

    @Test("a write to a read-only register is answered with exception 2 and counted")
    func readOnlyRegisters() throws {
        let controller = try ReferenceController(options: LinkHarness.options())
        defer { controller.stop() }
        let context = try ModbusContext(LinkHarness.settings(port: controller.port))
        try context.connect()
        #expect(throws: ModbusLinkError.self) { try context.write(RegisterMap.ceiling(.calf), [9999]) }
        do { try context.write(RegisterMap.ceiling(.calf), [9999]) } catch {
            #expect(error.kind == .exception)
            #expect(error.message.contains("Illegal data address"))
        }
        var block = [UInt16](repeating: 0, count: Int(RegisterMap.startupReadCount))
        try context.read(0, count: RegisterMap.startupReadCount, into: &block)
        #expect(block[Int(RegisterMap.ceiling(.calf))] == 1600)
    }

    @Test("a controller that does not answer at start-up is an error naming the host and what was tried")
    func noControllerAtStartup() throws {
        let port = try freeLoopbackPort()
        var settings = LinkHarness.settings(port: port)
        settings.timeoutMilliseconds = 20
        do {
            _ = try ModbusMassager(settings: settings, attempts: 2)
            Issue.record("expected the start-up to fail")
        } catch {
            #expect(error.kind == .connection)
            #expect(error.message.contains("127.0.0.1:\(port)"))
            #expect(error.message.contains("tried 2 times"))
            #expect(error.message.contains("does not answer"))
        }
    }

    @Test("controller ceilings lower than the engine's are refused at start-up, naming the zone")
    func lowerControllerCeilingsRefused() throws {
        var options = LinkHarness.options()
        options.ceilingsMMHg.heel = 90
        let controller = try ReferenceController(options: options)
        defer { controller.stop() }
        let link = try ModbusMassager(settings: LinkHarness.settings(port: controller.port))
        defer { link.close() }
        #expect(link.controller.ceilingsMMHg.heel == 90)
        do {
            try link.check(limits: .default)
            Issue.record("expected the ceilings to be refused")
        } catch {
            #expect(error.kind == .incompatible)
            #expect(error.message.contains("heel: the controller's ceiling is 90 mmHg, below the agent's 120 mmHg"))
            #expect(error.message.contains("limits.pressure_ceiling_mmhg.heel"))
        }
        try link.check(limits: try EngineLimits(ceilingsMMHg: [.heel: 90]))
    }

    @Test("a full session run by the engine over Modbus TCP completes")
    func fullSession() async throws {
        let h = try LinkHarness()
        h.startDriver()
        do {
            try await h.startSession(seconds: 3)
            try await waitUntil(timeout: .seconds(30), "the session ends") {
                h.journal.types.contains("session_completed") || h.journal.types.contains("session_aborted")
            }
            #expect(h.journal.types.contains("session_completed"), "events: \(h.journal.all)")
            #expect(h.journal.raisedFaults.isEmpty)
            // The cells really inflated on the controller, and within its ceiling.
            #expect(h.controller.snapshot.peakMMHg.calf > 30)
            #expect(h.controller.snapshot.peakMMHg.calf <= HardLimits.ceiling(.calf))
            #expect(h.massager.statistics.failures == 0)
        }
        await h.stop()
    }

    @Test("the stop button pressed on the controller: it releases there, the engine aborts pain_signal, and the latch clears once let go")
    func stopButton() async throws {
        let h = try LinkHarness()
        h.startDriver()
        do {
            try await h.startSession(seconds: 20)
            try await waitUntil(timeout: .seconds(10), "the calf inflates") { h.controller.snapshot.pressuresMMHg.calf > 20 }
            h.controller.setStopButton(true)
            try await waitUntil(timeout: .seconds(30), "the controller released by itself") {
                h.controller.snapshot.released && h.controller.snapshot.stopLatched
            }
            try await waitUntil(timeout: .seconds(30), "the engine aborted") { !h.journal.abortReasons.isEmpty }
            #expect(h.journal.abortReasons == [.painSignal])
            #expect(h.engine.telemetry().painLockout != nil)
            h.controller.setStopButton(false)
            try await waitUntil(timeout: .seconds(30), "the latch cleared with zero demand") { !h.controller.snapshot.stopLatched }
            #expect(h.controller.snapshot.faults == 0)
        }
        await h.stop()
    }

    @Test("a controller that stops answering mid-session: the engine aborts hardware_fault and latches; the controller's watchdog releases")
    func controllerStopsAnswering() async throws {
        let h = try LinkHarness()
        h.startDriver()
        do {
            try await h.startSession(seconds: 20)
            try await waitUntil(timeout: .seconds(10), "the calf inflates") { h.controller.snapshot.pressuresMMHg.calf > 20 }
            h.controller.setFrozen(true)
            try await waitUntil(timeout: .seconds(30), "the engine aborted") { !h.journal.abortReasons.isEmpty }
            #expect(h.journal.abortReasons == [.hardwareFault])
            #expect(h.journal.raisedFaults.contains { $0.kind == .hardwareFault && $0.detail.contains("modbus link") })
            try await waitUntil(timeout: .seconds(30), "the controller's watchdog released") {
                h.controller.snapshot.faults & RegisterMap.FaultBits.watchdog != 0 && h.controller.snapshot.released
            }
            #expect(h.massager.statistics.timeouts > 0)
            // The link comes back, but nothing resumes: the fault stays latched until acknowledged.
            h.controller.setFrozen(false)
            try await waitUntil(timeout: .seconds(30), "the link answers again") {
                h.controller.snapshot.requestsServed > 0 && h.engine.telemetry().faults.contains { $0.kind == .hardwareFault }
            }
            #expect(h.engine.telemetry().state == .idle)
            #expect(throws: EngineError.self) {
                try h.engine.start(.steps([StepSpec(target: "calf", technique: "compression", intensity: 4, durationSeconds: 3)]))
            }
        }
        await h.stop()
    }

    @Test("an agent that goes quiet with pressure on: the controller's watchdog releases within its timeout")
    func agentGoesQuiet() async throws {
        let h = try LinkHarness(options: LinkHarness.options(watchdogMilliseconds: 200))
        h.startDriver()
        do {
            try await h.startSession(seconds: 20)
            try await waitUntil(timeout: .seconds(10), "the calf inflates") { h.controller.snapshot.pressuresMMHg.calf > 20 }
            h.hardware.mute()
            let mutedAt = h.controller.now
            try await waitUntil(timeout: .seconds(30), "the controller released by itself") {
                h.controller.snapshot.faults & RegisterMap.FaultBits.watchdog != 0
            }
            let snapshot = h.controller.snapshot
            let released = try #require(snapshot.lastOwnRelease)
            let lastCommand = try #require(snapshot.lastCommandAt)
            #expect(lastCommand <= mutedAt + 0.05)
            // Released by its watchdog: after the timeout of the last command, and
            // within the timeout plus the controller's polling (generous on a loaded machine).
            #expect(released - lastCommand >= 0.2, "released \(released - lastCommand) s after the last command")
            #expect(released - lastCommand <= 0.2 + 0.1, "released \(released - lastCommand) s after the last command")
            try await waitUntil(timeout: .seconds(30), "the cells vent") { h.controller.snapshot.pressuresMMHg.calf < 10 }
        }
        await h.stop()
    }

    @Test("a controller that is killed: the engine aborts hardware_fault; the link reconnects to its replacement and reports the restart")
    func controllerKilledAndReplaced() async throws {
        let h = try LinkHarness()
        h.startDriver()
        var replacement: ReferenceController?
        do {
            try await h.startSession(seconds: 20)
            try await waitUntil(timeout: .seconds(10), "the calf inflates") { h.controller.snapshot.pressuresMMHg.calf > 20 }
            h.controller.stop()
            try await waitUntil(timeout: .seconds(30), "the engine aborted") { !h.journal.abortReasons.isEmpty }
            #expect(h.journal.abortReasons == [.hardwareFault])
            #expect(h.engine.telemetry().faults.contains { $0.kind == .hardwareFault })
            var options = LinkHarness.options()
            options.bootCounter = h.massager.controller.bootCounter &+ 1
            replacement = try ReferenceController(port: h.controller.port, options: options)
            try await waitUntil(timeout: .seconds(10), "the link reconnected and reported the restart") {
                h.massager.statistics.reconnects > 0 && h.hardware.reportedFaults.contains { $0.contains("the controller restarted") }
            }
        }
        await h.stop()
        replacement?.stop()
    }

    @Test("a controller replaced while the link was down with lower ceilings: every read reports it, so the fault never reads healthy until the agent restarts")
    func replacementWithLowerCeilings() async throws {
        let h = try LinkHarness()
        h.startDriver()
        var replacement: ReferenceController?
        do {
            try await waitUntil(timeout: .seconds(10), "the engine ticks") { h.engine.tickCount > 10 }
            h.controller.stop()
            try await waitUntil(timeout: .seconds(30), "the link is down") { h.engine.telemetry().faults.contains { $0.kind == .hardwareFault } }
            var options = LinkHarness.options()
            options.bootCounter = h.massager.controller.bootCounter
            options.ceilingsMMHg[.calf] = 60
            replacement = try ReferenceController(port: h.controller.port, options: options)
            try await waitUntil(timeout: .seconds(10), "the link reconnected and reported the changed ceilings") {
                h.massager.statistics.reconnects > 0 && h.hardware.reportedFaults.contains { $0.contains("settings changed while the link was down") && $0.contains("calf") }
            }
            // Still reported on later reads: nothing can acknowledge it away.
            let seen = h.hardware.reportedFaults.count
            try await waitUntil(timeout: .seconds(10), "reported again") {
                h.hardware.reportedFaults.dropFirst(seen).contains { $0.contains("settings changed") }
            }
            #expect(throws: EngineError.self) { _ = try h.engine.acknowledgeFaults() }
        }
        await h.stop()
        replacement?.stop()
    }

    @Test("a stuck dump valve on the controller: after the stop button the pressure does not fall, and the engine latches release_failed (critical)")
    func stuckValveOnTheController() async throws {
        let h = try LinkHarness()
        h.startDriver()
        do {
            try await h.startSession(seconds: 20)
            try await waitUntil(timeout: .seconds(10), "the calf inflates") { h.controller.snapshot.pressuresMMHg.calf > 20 }
            h.controller.simulator.inject(.stuckDumpValve)
            h.controller.setStopButton(true)
            try await waitUntil(timeout: .seconds(30), "the engine aborted") { !h.journal.abortReasons.isEmpty }
            #expect(h.journal.abortReasons == [.painSignal])
            try await waitUntil(timeout: .seconds(30), "release_failed latched") {
                h.journal.raisedFaults.contains { $0.kind == .releaseFailed }
            }
            #expect(h.journal.raisedFaults.first { $0.kind == .releaseFailed }?.kind.isCritical == true)
            #expect(h.controller.snapshot.pressuresMMHg.calf > 5, "the valve really is stuck: \(h.controller.snapshot.pressuresMMHg)")
            h.controller.simulator.clearAllFaults()
            h.controller.setStopButton(false)
        }
        await h.stop()
    }
}

/// The same link over Modbus RTU: a pseudo-terminal line at 115200 baud
/// (`PseudoSerialLine`), which can also add noise.
@Suite("Modbus RTU link against the reference controller", .serialized, .tags(.slow))
struct ModbusRTULinkTests {
    @Test("a full session run by the engine over Modbus RTU on a pseudo-terminal line completes")
    func fullSessionOverRTU() async throws {
        let h = try LinkHarness(rtu: true)
        h.startDriver()
        do {
            try await h.startSession(seconds: 3)
            try await waitUntil(timeout: .seconds(30), "the session ends") {
                h.journal.types.contains("session_completed") || h.journal.types.contains("session_aborted")
            }
            #expect(h.journal.types.contains("session_completed"), "events: \(h.journal.all); link: \(h.massager.statistics)")
            #expect(h.controller.snapshot.peakMMHg.calf > 30)
            #expect(h.controller.snapshot.peakMMHg.calf <= HardLimits.ceiling(.calf))
        }
        await h.stop()
    }

    @Test("noise on the RTU line: bad frames are counted and retried, and the controller never applies a setpoint the engine did not send")
    func noiseOnTheLine() async throws {
        let h = try LinkHarness(rtu: true)
        let line = try #require(h.line)
        h.startDriver()
        do {
            try await waitUntil(timeout: .seconds(10), "the engine ticks") { h.engine.tickCount > 10 }
            // One chunk in fifty gets a bit flipped, both ways.
            line.setNoise(perMille: 20)
            try await h.startSession(seconds: 4)
            try await waitUntil(timeout: .seconds(30), "the session ends") {
                h.journal.types.contains("session_completed") || h.journal.types.contains("session_aborted")
            }
            line.setNoise(perMille: 0)
            let statistics = h.massager.statistics
            #expect(line.counts.corrupted > 0, "the line carried noise: \(line.counts)")
            #expect(statistics.badFrames + statistics.timeouts > 0, "the driver saw bad frames or lost answers: \(statistics)")
            #expect(statistics.retried > 0, "isolated failures were retried, not faulted: \(statistics)")
            // Whatever the noise did, every setpoint the controller applied is one the engine sent.
            let sent = h.hardware.sentSetpoints
            let applied = h.controller.appliedSetpoints
            #expect(!applied.isEmpty)
            let foreign = applied.filter { !sent.contains($0) }
            #expect(foreign.isEmpty, "applied but never sent: \(foreign.prefix(5))")
            // The session ended as a noisy line allows: completed, or aborted
            // hardware_fault when failures came in a row; never anything else.
            #expect(h.journal.abortReasons.allSatisfy { $0 == .hardwareFault }, "\(h.journal.abortReasons)")
            #expect(h.controller.snapshot.peakMMHg.calf <= HardLimits.ceiling(.calf))
        }
        await h.stop()
    }

    @Test("a controller that stops answering on the RTU line: failures in a row fault the link, the engine aborts hardware_fault, the controller's watchdog releases")
    func rtuControllerStopsAnswering() async throws {
        let h = try LinkHarness(rtu: true)
        h.startDriver()
        do {
            try await h.startSession(seconds: 20)
            try await waitUntil(timeout: .seconds(10), "the calf inflates") { h.controller.snapshot.pressuresMMHg.calf > 20 }
            h.controller.setFrozen(true)
            try await waitUntil(timeout: .seconds(30), "the engine aborted") { !h.journal.abortReasons.isEmpty }
            #expect(h.journal.abortReasons == [.hardwareFault])
            #expect(h.journal.raisedFaults.contains { $0.kind == .hardwareFault && $0.detail.contains("in a row") }, "\(h.journal.raisedFaults)")
            try await waitUntil(timeout: .seconds(30), "the controller's watchdog released") {
                h.controller.snapshot.faults & RegisterMap.FaultBits.watchdog != 0 && h.controller.snapshot.released
            }
        }
        await h.stop()
    }
}
