import MassageEngine

/// The controller board's safety duties, the second channel, as a pure
/// value: commands, time and the board's own sensors go in, "release now"
/// comes out. `ReferenceController` runs it; a real board's firmware does
/// the same (docs/hardware.md, "The controller's duties").
///
/// - Ceilings: every setpoint is clamped to the board's ceiling whatever
///   the agent writes (the clamp is reported, latched); measured pressure
///   above the ceiling for 100 ms releases and latches `overpressure`.
/// - Watchdog: with pressure commanded, no command with a new sequence
///   number within the timeout releases and latches `watchdog`.
/// - Stop button: pressed releases at once and latches.
/// - A releasing latch keeps the outputs released until the button is up
///   and a new command with zero demand arrives (no restart under demand).
public struct ControllerDuties: Sendable {
    /// A duty a test can turn off, to show the conformance check notices.
    public enum Duty: String, Sendable, CaseIterable {
        case watchdog, ceilings, stopButton = "stop-button"
    }

    public enum Action: Sendable, Equatable {
        case none
        case release
        case apply(ActuatorCommand)
    }

    public let ceilingsMMHg: ZoneValues<Double>
    public let watchdogSeconds: Double
    public let disabled: Set<Duty>
    /// Measured above the ceiling for this long trips `overpressure`.
    public static let overpressureSeconds = 0.1

    public private(set) var faults: UInt16 = 0
    public private(set) var stopLatched = false
    public private(set) var released = true
    public private(set) var lastSequence: UInt16?
    public private(set) var commandsAccepted = 0
    private var lastCommandTime = 0.0
    private var demand = false
    private var overSince = ZoneValues<Double?>(repeating: nil)

    public init(ceilingsMMHg: ZoneValues<Double>, watchdogSeconds: Double, disabled: Set<Duty> = []) {
        self.ceilingsMMHg = ceilingsMMHg
        self.watchdogSeconds = watchdogSeconds
        self.disabled = disabled
    }

    static let releasingFaults = RegisterMap.FaultBits.watchdog | RegisterMap.FaultBits.stopButton | RegisterMap.FaultBits.overpressure

    /// Outputs held released by a latch.
    public var latchedReleased: Bool { stopLatched || faults & Self.releasingFaults != 0 }

    /// A write of the command block.
    public mutating func command(sequence: UInt16, setpoints: ZoneValues<Double>, technique: Technique?, motorDuty: Double,
                                 releaseAll: Bool, buttonHeld: Bool, now: Double) -> Action {
        guard sequence != lastSequence else { return .none }  // a repeat feeds nothing
        lastSequence = sequence
        lastCommandTime = now
        commandsAccepted += 1
        let zeroDemand = releaseAll || (Zone.allCases.allSatisfy { setpoints[$0] <= 0 } && motorDuty <= 0)
        if faults != 0 || stopLatched {
            if zeroDemand && !buttonHeld {
                faults = 0
                stopLatched = false
            }
            if latchedReleased || zeroDemand { return release() }
        }
        if zeroDemand { return release() }
        var safe = ActuatorCommand(pressuresMMHg: setpoints, technique: technique, motorDuty: min(1, max(0, motorDuty)))
        if !disabled.contains(.ceilings) {
            for zone in Zone.allCases where setpoints[zone] > ceilingsMMHg[zone] {
                safe.pressuresMMHg[zone] = ceilingsMMHg[zone]
                faults |= RegisterMap.FaultBits.setpointClamped
            }
        }
        released = false
        demand = true
        return .apply(safe)
    }

    /// Runs every few milliseconds with the board's own sensors.
    public mutating func step(now: Double, buttonHeld: Bool, measured: ZoneValues<Double>) -> Action {
        if buttonHeld, !disabled.contains(.stopButton) {
            let first = !stopLatched
            stopLatched = true
            faults |= RegisterMap.FaultBits.stopButton
            if first || !released { return release() }
        }
        if demand, !released, !disabled.contains(.watchdog), now - lastCommandTime > watchdogSeconds {
            faults |= RegisterMap.FaultBits.watchdog
            return release()
        }
        if !disabled.contains(.ceilings) {
            for zone in Zone.allCases {
                if measured[zone] > ceilingsMMHg[zone] {
                    let since = overSince[zone] ?? now
                    overSince[zone] = since
                    if now - since >= Self.overpressureSeconds {
                        overSince[zone] = nil
                        faults |= RegisterMap.FaultBits.overpressure
                        return release()
                    }
                } else {
                    overSince[zone] = nil
                }
            }
        }
        return .none
    }

    /// An actuator the board found not following its setpoint.
    public mutating func actuatorFailed(_ zone: Zone) { faults |= RegisterMap.FaultBits.actuator(zone) }

    private mutating func release() -> Action {
        released = true
        demand = false
        return .release
    }
}
