import MassageEngine
import MassagerLink
import Testing

@Suite("The controller's duties (pure)")
struct ControllerDutiesTests {
    let ceilings = HardLimits.ceilingsMMHg

    func calf(_ mmHg: Double) -> ZoneValues<Double> {
        var v = ZoneValues<Double>(repeating: 0)
        v.calf = mmHg
        return v
    }

    @Test("the watchdog releases when no new command arrives within its timeout while pressure is on")
    func watchdog() {
        var d = ControllerDuties(ceilingsMMHg: ceilings, watchdogSeconds: 0.2)
        #expect(d.command(sequence: 1, setpoints: calf(60), technique: .compression, motorDuty: 0.3, releaseAll: false, buttonHeld: false, now: 0) != .release)
        #expect(d.step(now: 0.19, buttonHeld: false, measured: calf(55)) == .none)
        // A repeated sequence number is not a new command: it feeds nothing.
        #expect(d.command(sequence: 1, setpoints: calf(60), technique: .compression, motorDuty: 0.3, releaseAll: false, buttonHeld: false, now: 0.19) == .none)
        #expect(d.step(now: 0.21, buttonHeld: false, measured: calf(55)) == .release)
        #expect(d.faults & RegisterMap.FaultBits.watchdog != 0)
        // Latched: a new command under demand stays released.
        #expect(d.command(sequence: 2, setpoints: calf(60), technique: .compression, motorDuty: 0.3, releaseAll: false, buttonHeld: false, now: 0.3) == .release)
        #expect(d.faults & RegisterMap.FaultBits.watchdog != 0)
        // Zero demand clears it.
        #expect(d.command(sequence: 3, setpoints: calf(0), technique: nil, motorDuty: 0, releaseAll: true, buttonHeld: false, now: 0.32) == .release)
        #expect(d.faults == 0)
    }

    @Test("an idle controller does not trip its watchdog")
    func idleWatchdog() {
        var d = ControllerDuties(ceilingsMMHg: ceilings, watchdogSeconds: 0.2)
        _ = d.command(sequence: 1, setpoints: calf(0), technique: nil, motorDuty: 0, releaseAll: false, buttonHeld: false, now: 0)
        #expect(d.step(now: 10, buttonHeld: false, measured: calf(0)) == .none)
        #expect(d.faults == 0)
    }

    @Test("setpoints above the controller's ceiling are clamped whatever is written, and the clamp is latched")
    func ceilingClamp() {
        var d = ControllerDuties(ceilingsMMHg: ceilings, watchdogSeconds: 0.2)
        let action = d.command(sequence: 1, setpoints: calf(500), technique: .compression, motorDuty: 0.3, releaseAll: false, buttonHeld: false, now: 0)
        guard case .apply(let command) = action else { Issue.record("expected the command applied, clamped"); return }
        #expect(command.pressuresMMHg.calf == ceilings.calf)
        #expect(d.faults & RegisterMap.FaultBits.setpointClamped != 0)
    }

    @Test("measured pressure above the controller's ceiling for 100 ms releases and latches overpressure")
    func overpressure() {
        var d = ControllerDuties(ceilingsMMHg: ceilings, watchdogSeconds: 10)
        _ = d.command(sequence: 1, setpoints: calf(100), technique: .compression, motorDuty: 0.3, releaseAll: false, buttonHeld: false, now: 0)
        #expect(d.step(now: 0.00, buttonHeld: false, measured: calf(ceilings.calf + 5)) == .none)
        #expect(d.step(now: 0.05, buttonHeld: false, measured: calf(ceilings.calf + 5)) == .none)
        #expect(d.step(now: 0.11, buttonHeld: false, measured: calf(ceilings.calf + 5)) == .release)
        #expect(d.faults & RegisterMap.FaultBits.overpressure != 0)
    }

    @Test("the stop button releases at once and stays latched until it is up and zero demand is commanded")
    func stopButton() {
        var d = ControllerDuties(ceilingsMMHg: ceilings, watchdogSeconds: 0.2)
        _ = d.command(sequence: 1, setpoints: calf(60), technique: .compression, motorDuty: 0.3, releaseAll: false, buttonHeld: false, now: 0)
        #expect(d.step(now: 0.01, buttonHeld: true, measured: calf(55)) == .release)
        #expect(d.stopLatched)
        // Zero demand while the button is still held clears nothing.
        _ = d.command(sequence: 2, setpoints: calf(0), technique: nil, motorDuty: 0, releaseAll: true, buttonHeld: true, now: 0.02)
        #expect(d.stopLatched)
        // Button up, but demand: still latched and released.
        #expect(d.command(sequence: 3, setpoints: calf(60), technique: .compression, motorDuty: 0.3, releaseAll: false, buttonHeld: false, now: 0.03) == .release)
        #expect(d.stopLatched)
        // Button up and zero demand: cleared.
        _ = d.command(sequence: 4, setpoints: calf(0), technique: nil, motorDuty: 0, releaseAll: false, buttonHeld: false, now: 0.04)
        #expect(!d.stopLatched)
        #expect(d.faults == 0)
    }

    @Test("a disabled duty is not performed (test-only controllers for the conformance check)")
    func disabledDuty() {
        var d = ControllerDuties(ceilingsMMHg: ceilings, watchdogSeconds: 0.2, disabled: [.watchdog])
        _ = d.command(sequence: 1, setpoints: calf(60), technique: .compression, motorDuty: 0.3, releaseAll: false, buttonHeld: false, now: 0)
        #expect(d.step(now: 5, buttonHeld: false, measured: calf(55)) == .none)
    }
}

@Suite("Ceilings at start-up")
struct ControllerCeilingsTests {
    @Test("a controller ceiling lower than the engine's is refused, naming the zone, both values and the key")
    func lowerCeilingRefused() throws {
        var board = HardLimits.ceilingsMMHg
        board.shin = 70
        let problems = ControllerCeilings.problems(controller: board, engine: .default)
        #expect(problems.count == 1)
        #expect(problems[0].contains("shin"))
        #expect(problems[0].contains("70 mmHg"))
        #expect(problems[0].contains("80 mmHg"))
        #expect(problems[0].contains("limits.pressure_ceiling_mmhg.shin"))
        // Lowering the agent's ceiling to the board's is accepted.
        let lowered = try EngineLimits(ceilingsMMHg: [.shin: 70])
        #expect(ControllerCeilings.problems(controller: board, engine: lowered).isEmpty)
    }
}
