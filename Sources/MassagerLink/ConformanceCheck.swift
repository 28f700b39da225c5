import Foundation
import MassageEngine

/// `massager-controller check`: exercises a controller's duties over the
/// link, as an agent would, and says for each whether it holds. Works
/// against any controller that serves `RegisterMap` (the reference one or
/// a real board on the bench).
public struct ConformanceCheck: Sendable {
    public struct Result: Sendable, Equatable, CustomStringConvertible {
        public var duty: ControllerDuties.Duty
        public var passed: Bool
        public var detail: String
        public var description: String { "\(passed ? "PASS" : "FAIL") \(duty.rawValue): \(detail)" }
    }

    public let settings: LinkSettings
    /// Asks the person (or test) to press or let go of the stop button and
    /// returns once asked; the check then waits for the controller to see it.
    public var prompt: @Sendable (String) -> Void
    /// How long to wait for the stop button after asking for it.
    public var buttonWaitSeconds: Int

    public init(settings: LinkSettings, buttonWaitSeconds: Int = 30, prompt: @escaping @Sendable (String) -> Void) {
        self.settings = settings
        self.buttonWaitSeconds = buttonWaitSeconds
        self.prompt = prompt
    }

    /// Runs the checks of `duties`, in order, and returns one result each.
    public func run(_ duties: [ControllerDuties.Duty] = ControllerDuties.Duty.allCases) throws(ModbusLinkError) -> [Result] {
        let link = try Link(settings)
        return duties.map { duty in
            let result: Result
            do throws(ModbusLinkError) {
                switch duty {
                case .ceilings: result = try checkCeilings(link)
                case .watchdog: result = try checkWatchdog(link)
                case .stopButton: result = try checkStopButton(link)
                }
            } catch {
                result = Result(duty: duty, passed: false, detail: "the link failed during the check: \(error.message)")
            }
            try? link.command(setpoints: .init(repeating: 0), release: true)  // leave it released
            return result
        }
    }

    // MARK: - The duties

    /// Writes every setpoint far above any ceiling for 1.5 s, fed every 20 ms: measured must stay at or under the ceiling.
    private func checkCeilings(_ link: Link) throws(ModbusLinkError) -> Result {
        let ceilings = link.info.ceilingsMMHg
        var worst: (zone: Zone, over: Double)?
        let end = ContinuousClock.now + .milliseconds(1500)
        while ContinuousClock.now < end {
            try link.command(setpoints: .init(repeating: 6000), release: false)
            let r = try link.readings()
            for zone in Zone.allCases {
                let over = r.pressures[zone] - ceilings[zone]
                if over > (worst?.over ?? Self.noiseMMHg) { worst = (zone, over) }
            }
            usleep(20_000)
        }
        try link.command(setpoints: .init(repeating: 0), release: true)
        if let worst {
            return Result(duty: .ceilings, passed: false, detail: "\(worst.zone.rawValue) read \(Self.format(ceilings[worst.zone] + worst.over)) mmHg with 6000 mmHg written; its ceiling is \(Self.format(ceilings[worst.zone])) mmHg")
        }
        return Result(duty: .ceilings, passed: true, detail: "6000 mmHg written to every zone for 1.5 s; every zone stayed at or under its ceiling")
    }

    /// Commands pressure, feeds it for 0.5 s, then goes quiet: the controller must release within its watchdog timeout.
    private func checkWatchdog(_ link: Link) throws(ModbusLinkError) -> Result {
        let timeout = link.info.watchdogMilliseconds
        var demand = ZoneValues<Double>(repeating: 0)
        demand.calf = link.info.ceilingsMMHg.calf / 2
        let feedEnd = ContinuousClock.now + .milliseconds(500)
        while ContinuousClock.now < feedEnd {
            try link.command(setpoints: demand, release: false)
            usleep(20_000)
        }
        try link.command(setpoints: demand, release: false)
        let quiet = ContinuousClock.now
        let slack = 100
        while ContinuousClock.now - quiet < .milliseconds(timeout + slack) {
            let r = try link.readings()
            if r.released && r.faults & RegisterMap.FaultBits.watchdog != 0 {
                let ms = Self.milliseconds(ContinuousClock.now - quiet)
                return Result(duty: .watchdog, passed: true, detail: "released by itself \(ms) ms after the last command (timeout \(timeout) ms), watchdog fault bit set")
            }
            usleep(2_000)
        }
        return Result(duty: .watchdog, passed: false, detail: "still not released \(timeout + slack) ms after the last command (watchdog_ms reads \(timeout))")
    }

    /// With pressure commanded, the stop button must release at once, latch
    /// (a new command under demand stays released), and clear only with the
    /// button up and zero demand.
    private func checkStopButton(_ link: Link) throws(ModbusLinkError) -> Result {
        var demand = ZoneValues<Double>(repeating: 0)
        demand.calf = link.info.ceilingsMMHg.calf / 2
        try link.command(setpoints: demand, release: false)
        prompt("press the stop button")
        let deadline = ContinuousClock.now + .seconds(buttonWaitSeconds)
        var latched = false
        while ContinuousClock.now < deadline {
            try link.command(setpoints: demand, release: false)
            let r = try link.readings()
            if r.status & RegisterMap.StatusBits.stopLatched != 0 {
                latched = true
                guard r.released else {
                    return Result(duty: .stopButton, passed: false, detail: "the button is latched but the outputs are not released")
                }
                break
            }
            usleep(10_000)
        }
        guard latched else { return Result(duty: .stopButton, passed: false, detail: "the controller did not report the stop button latched within \(buttonWaitSeconds) s of the prompt") }
        prompt("let go of the stop button")
        usleep(300_000)
        // Still latched under demand.
        try link.command(setpoints: demand, release: false)
        let underDemand = try link.readings()
        guard underDemand.released, underDemand.status & RegisterMap.StatusBits.stopLatched != 0 else {
            return Result(duty: .stopButton, passed: false, detail: "the latch cleared (or the outputs came back) under demand after the button was let go")
        }
        // Zero demand clears it.
        let clearDeadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < clearDeadline {
            try link.command(setpoints: .init(repeating: 0), release: true)
            let r = try link.readings()
            if r.status & RegisterMap.StatusBits.stopLatched == 0 {
                return Result(duty: .stopButton, passed: true, detail: "released at once, stayed latched under demand, cleared with the button up and zero demand")
            }
            usleep(20_000)
        }
        return Result(duty: .stopButton, passed: false, detail: "the latch did not clear with the button up and zero demand")
    }

    // MARK: - Helpers

    /// Sensor noise tolerated above a ceiling (mmHg).
    static let noiseMMHg = 1.0

    static func format(_ v: Double) -> String { String(format: "%.1f", v) }

    static func milliseconds(_ d: Duration) -> Int {
        Int(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000)
    }

    /// A bare link: raw registers, no engine semantics; used by the check's one thread only.
    final class Link {
        let context: ModbusContext
        let info: ControllerInfo
        private var sequence = UInt16.random(in: 1...1000)

        struct Readings {
            var status: UInt16
            var faults: UInt16
            var pressures: ZoneValues<Double>
            var released: Bool { status & RegisterMap.StatusBits.released != 0 }
        }

        init(_ settings: LinkSettings) throws(ModbusLinkError) {
            // Opening through the driver gives the same start-up checks and errors.
            let massager = try ModbusMassager(settings: settings)
            info = massager.controller
            massager.close()
            let context = try ModbusContext(settings)
            try context.connect()
            self.context = context
        }

        func readings() throws(ModbusLinkError) -> Readings {
            var b = [UInt16](repeating: 0, count: Int(RegisterMap.tickReadCount))
            try context.read(0, count: RegisterMap.tickReadCount, into: &b)
            return Readings(status: b[Int(RegisterMap.status)], faults: b[Int(RegisterMap.faults)],
                            pressures: ZoneValues { RegisterMap.decodeSignedTenths(b[Int(RegisterMap.pressure($0))]) })
        }

        func command(setpoints: ZoneValues<Double>, release: Bool) throws(ModbusLinkError) {
            var values = [UInt16](repeating: 0, count: Int(RegisterMap.commandCount))
            for z in Zone.allCases { values[Int(RegisterMap.setpoint(z) - RegisterMap.commandStart)] = RegisterMap.encodeTenths(setpoints[z]) }
            values[Int(RegisterMap.releaseAll - RegisterMap.commandStart)] = release ? 1 : 0
            let anyDemand = !release && Zone.allCases.contains { setpoints[$0] > 0 }
            values[Int(RegisterMap.motorDuty - RegisterMap.commandStart)] = anyDemand ? 300 : 0
            values[Int(RegisterMap.technique - RegisterMap.commandStart)] = anyDemand ? RegisterMap.techniqueCode(.compression) : 0
            sequence = sequence == .max ? 1 : sequence + 1
            values[Int(RegisterMap.sequence - RegisterMap.commandStart)] = sequence
            try context.write(RegisterMap.commandStart, values)
        }
    }
}
