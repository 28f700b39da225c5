import Foundation

/// What the supervisor found in one reading, for the engine to act on.
struct SupervisorVerdict {
    /// Release every actuator now and end any session with this reason.
    var abort: AbortReason?
    /// A latched `release_failed` is active: release again this tick.
    var releaseAgain = false
    /// Faults raised by this reading, in the order found.
    var raised: [Fault] = []
    /// Faults that cleared by themselves (only `overheat`, once cool).
    var cleared: [Fault] = []
}

/// The first safety channel, as a pure value: readings and what was
/// commanded go in, a verdict comes out; it never touches the hardware.
/// `EngineCore` runs it first on every tick, releases before it reports,
/// and gives every command to `clamp(_:limits:)` just before the hardware.
///
/// The rules (docs/safety.md names the test of each):
/// - the stop button → `pain_signal`, released in the same tick;
/// - a fault the hardware reports → `hardware_fault`, latched;
/// - a pressure sensor without a new sample for 100 ms, or out of its
///   plausible range → `sensor_fault`, latched; the same for the motor
///   temperature sensor;
/// - measured pressure above the ceiling in force on more than 2 of the last
///   10 readings → `overpressure`, latched;
/// - measured above the recent commanded envelope by 15 mmHg for 100 ms, or
///   under half of the followed setpoint for 1 s → `pressure_tracking`,
///   aborting `hardware_fault`, latched;
/// - after any release, every zone below 10 mmHg within 0.5 s, or a
///   critical `release_failed`, latched, with a release on every tick;
/// - the motor above its maximum → `overheat`, until it cools below the
///   resume temperature (not latched: the cool-down rule).
/// Latched faults clear only through `acknowledge()`, and only once their
/// condition has read healthy for `HardLimits.faultClearSeconds`.
struct SafetySupervisor {
    /// Tick counts derived from the hard limits for one tick length.
    struct Timing {
        let tickSeconds: Double
        let staleTicks: Int
        let healthyTicks: Int
        let trackingTripTicks: Int
        let followLossTicks: Int
        let releaseVerifyTicks: Int
        /// Per-tick share by which the envelopes follow the setpoint (time
        /// constant `HardLimits.trackingEnvelopeSeconds`).
        let followAlpha: Double

        init(tickMilliseconds: Int64) {
            tickSeconds = Double(tickMilliseconds) / 1000
            func ticks(_ seconds: Double) -> Int { max(1, Int((seconds / (Double(tickMilliseconds) / 1000)).rounded(.up))) }
            staleTicks = ticks(HardLimits.sensorStaleSeconds)
            healthyTicks = ticks(HardLimits.faultClearSeconds)
            trackingTripTicks = ticks(HardLimits.trackingTripSeconds)
            followLossTicks = ticks(HardLimits.followLossSeconds)
            releaseVerifyTicks = ticks(HardLimits.releaseVerifySeconds)
            followAlpha = 1 - exp(-tickSeconds / HardLimits.trackingEnvelopeSeconds)
        }
    }

    /// A fault in force and how long its condition has read healthy.
    struct ActiveFault: Equatable {
        var fault: Fault
        var healthyTicks = 0
    }

    let timing: Timing

    // MARK: What the last reading said
    private(set) var measured = ZoneValues<Double>(repeating: 0)
    private(set) var motorTemperature = 0.0
    private(set) var haveReadings = false
    private(set) var stopButtonHeld = false
    private(set) var faults: [Fault.Key: ActiveFault] = [:]

    // MARK: Per-zone state
    private var pressureSamples = ZoneValues<UInt32>(repeating: 0)
    private var unchangedPressureSamples = ZoneValues<Int>(repeating: 0)
    /// One bit per recent reading: 1 = above the ceiling. Newest in bit 0.
    private var overHistory = ZoneValues<UInt32>(repeating: 0)
    private var upperEnvelope = ZoneValues<Double>(repeating: 0)
    private var lowerEnvelope = ZoneValues<Double>(repeating: 0)
    private var aboveEnvelopeTicks = ZoneValues<Int>(repeating: 0)
    private var belowEnvelopeTicks = ZoneValues<Int>(repeating: 0)
    private var temperatureSample: UInt32 = 0
    private var unchangedTemperatureSamples = 0

    /// Readings left to see every zone below the safe level after a release.
    private(set) var releaseTicksLeft: Int?

    init(tickMilliseconds: Int64) {
        timing = Timing(tickMilliseconds: tickMilliseconds)
    }

    // MARK: - One reading

    /// Checks one reading against every rule. `commanded` is what the engine
    /// last sent to the hardware (zero after a release). The abort reason is
    /// the most urgent found: pain signal, hardware fault, sensor fault,
    /// release failure, overheat, overpressure.
    mutating func check(_ r: SensorReadings, commanded: ZoneValues<Double>, limits: EngineLimits) -> SupervisorVerdict {
        var verdict = SupervisorVerdict()
        let first = !haveReadings
        haveReadings = true
        measured = r.pressuresMMHg
        motorTemperature = r.motorTemperatureC
        stopButtonHeld = r.stopButtonPressed

        let pain = r.stopButtonPressed
        var hardware = false, sensor = false, overheat = false, overpressure = false, releaseFailed = false
        // Which conditions read healthy this tick, for the latched faults.
        var sensorHealthy = ZoneValues<Bool>(repeating: true)
        var overHealthy = ZoneValues<Bool>(repeating: true)
        var trackingHealthy = ZoneValues<Bool>(repeating: true)
        var allReleased = true

        if let reported = r.hardwareFault {
            raise(kind: .hardwareFault, zone: reported.zone, detail: reported.detail, into: &verdict)
            hardware = true
        }

        for zone in Zone.allCases {
            let pressure = r.pressuresMMHg[zone]
            unchangedPressureSamples[zone] = !first && r.pressureSamples[zone] == pressureSamples[zone] ? unchangedPressureSamples[zone] + 1 : 0
            let stale = unchangedPressureSamples[zone] >= timing.staleTicks
            let plausible = pressure.isFinite && HardLimits.plausiblePressureMMHg.contains(pressure)
            if !(pressure < HardLimits.releaseSafeMMHg) { allReleased = false }

            // The commanded envelope: jumps up with the setpoint and follows it
            // down more slowly than any cell deflates; and below, a follower of
            // the setpoint that rises more slowly than any cell inflates.
            let command = commanded[zone].isFinite ? max(0, commanded[zone]) : 0
            upperEnvelope[zone] = max(command, upperEnvelope[zone] + (command - upperEnvelope[zone]) * timing.followAlpha)
            lowerEnvelope[zone] = min(command, lowerEnvelope[zone] + (command - lowerEnvelope[zone]) * timing.followAlpha)

            if stale || !plausible {
                sensorHealthy[zone] = false
                overHistory[zone] = 0
                aboveEnvelopeTicks[zone] = 0
                belowEnvelopeTicks[zone] = 0
                let detail = stale
                    ? "\(zone.rawValue) pressure sensor gave no new sample for \(format(Double(unchangedPressureSamples[zone]) * timing.tickSeconds * 1000)) ms"
                    : "\(zone.rawValue) pressure sensor reads \(pressure) mmHg, outside \(format(HardLimits.plausiblePressureMMHg.lowerBound))…\(format(HardLimits.plausiblePressureMMHg.upperBound))"
                raise(kind: .sensorFault, zone: zone, detail: detail, into: &verdict)
                sensor = true
                continue
            }

            // Overpressure: at the ceiling, over a sliding window.
            let ceiling = limits.ceiling(zone)
            let over: UInt32 = pressure > ceiling ? 1 : 0
            overHistory[zone] = ((overHistory[zone] << 1) | over) & ((1 << UInt32(HardLimits.overpressureWindowTicks)) - 1)
            if over == 1 { overHealthy[zone] = false }
            let overCount = overHistory[zone].nonzeroBitCount
            if overCount > HardLimits.overpressureToleratedTicks {
                raise(kind: .overpressure, zone: zone, detail: "\(zone.rawValue) at \(format(pressure.rounded())) mmHg, over its ceiling of \(format(ceiling)) mmHg on \(overCount) of the last \(HardLimits.overpressureWindowTicks) readings", into: &verdict)
                overpressure = true
            }

            // Measured must follow commanded.
            if pressure > upperEnvelope[zone] + HardLimits.trackingMarginMMHg {
                aboveEnvelopeTicks[zone] += 1
                trackingHealthy[zone] = false
                if aboveEnvelopeTicks[zone] >= timing.trackingTripTicks {
                    let envelope = upperEnvelope[zone], milliseconds = Double(aboveEnvelopeTicks[zone]) * timing.tickSeconds * 1000
                    raise(kind: .pressureTracking, zone: zone, detail: "\(zone.rawValue) reads \(format(pressure.rounded())) mmHg, above the \(format(envelope.rounded())) mmHg commanded, for \(format(milliseconds)) ms: a runaway pump or a valve that does not open", into: &verdict)
                    hardware = true
                }
            } else {
                aboveEnvelopeTicks[zone] = 0
            }
            if pressure < lowerEnvelope[zone] / 2 - HardLimits.trackingMarginMMHg / 3 {
                belowEnvelopeTicks[zone] += 1
                trackingHealthy[zone] = false
                if belowEnvelopeTicks[zone] >= timing.followLossTicks {
                    let envelope = lowerEnvelope[zone], seconds = Double(belowEnvelopeTicks[zone]) * timing.tickSeconds
                    raise(kind: .pressureTracking, zone: zone, detail: "\(zone.rawValue) reads \(format(pressure.rounded())) mmHg for \(format(seconds)) s while about \(format(envelope.rounded())) mmHg is commanded: a frozen sensor, a leak or a failed pump", into: &verdict)
                    hardware = true
                }
            } else {
                belowEnvelopeTicks[zone] = 0
            }
        }
        pressureSamples = r.pressureSamples

        // The motor temperature sensor, then the temperature itself.
        let temperature = r.motorTemperatureC
        unchangedTemperatureSamples = !first && r.temperatureSample == temperatureSample ? unchangedTemperatureSamples + 1 : 0
        temperatureSample = r.temperatureSample
        let temperatureStale = unchangedTemperatureSamples >= timing.staleTicks
        let temperaturePlausible = temperature.isFinite && HardLimits.plausibleTemperatureC.contains(temperature)
        var temperatureHealthy = true
        if temperatureStale || !temperaturePlausible {
            temperatureHealthy = false
            let detail = temperatureStale
                ? "motor temperature sensor gave no new sample for \(format(Double(unchangedTemperatureSamples) * timing.tickSeconds * 1000)) ms"
                : "motor temperature sensor reads \(temperature) °C, outside \(format(HardLimits.plausibleTemperatureC.lowerBound))…\(format(HardLimits.plausibleTemperatureC.upperBound))"
            raise(kind: .sensorFault, zone: nil, detail: detail, into: &verdict)
            sensor = true
        } else {
            let overheatKey = Fault.Key(kind: .overheat, zone: nil)
            if temperature > limits.maxMotorTemperatureC {
                raise(kind: .overheat, zone: nil, detail: "motor at \(format(temperature.rounded())) °C, over its maximum of \(format(limits.maxMotorTemperatureC)) °C", into: &verdict)
                overheat = true
            } else if let active = faults[overheatKey], temperature < limits.motorResumeTemperatureC {
                faults[overheatKey] = nil
                verdict.cleared.append(active.fault)
            }
        }

        // Did the last release take?
        if let left = releaseTicksLeft {
            if allReleased {
                releaseTicksLeft = nil
            } else if left <= 1 {
                releaseTicksLeft = nil
                let worst = Zone.allCases.max { measured[$0] < measured[$1] } ?? .thigh
                let still = measured[worst], after = Double(timing.releaseVerifyTicks) * timing.tickSeconds
                raise(kind: .releaseFailed, zone: nil, detail: "pressure did not fall after a release: \(worst.rawValue) still at \(format(still.rounded())) mmHg after \(format(after)) s (safe: below \(format(HardLimits.releaseSafeMMHg)) mmHg)", into: &verdict)
                releaseFailed = true
            } else {
                releaseTicksLeft = left - 1
            }
        }
        let releaseFailedKey = Fault.Key(kind: .releaseFailed, zone: nil)
        if faults[releaseFailedKey] != nil { verdict.releaseAgain = true }

        // Latched faults whose condition reads healthy count towards acknowledgement.
        if !faults.isEmpty {
            for (key, var active) in faults where key.kind.latches {
                let healthy: Bool
                switch key.kind {
                case .hardwareFault: healthy = r.hardwareFault.map { $0.zone != key.zone } ?? true
                case .sensorFault: healthy = key.zone.map { sensorHealthy[$0] } ?? temperatureHealthy
                case .overpressure: healthy = key.zone.map { overHealthy[$0] && sensorHealthy[$0] } ?? true
                case .pressureTracking: healthy = key.zone.map { trackingHealthy[$0] && sensorHealthy[$0] } ?? true
                case .releaseFailed: healthy = allReleased
                case .controlOverrun, .overheat: healthy = true
                }
                active.healthyTicks = healthy ? active.healthyTicks + 1 : 0
                faults[key] = active
            }
        }

        if pain { verdict.abort = .painSignal }
        else if hardware { verdict.abort = .hardwareFault }
        else if sensor { verdict.abort = .sensorFault }
        else if releaseFailed { verdict.abort = .hardwareFault }
        else if overheat { verdict.abort = .overheat }
        else if overpressure { verdict.abort = .overpressure }
        return verdict
    }

    /// Raises a fault, or keeps an active one from counting as healthy. The
    /// detail is only built for a new fault: a condition that persists costs
    /// the tick no formatting.
    private mutating func raise(kind: Fault.Kind, zone: Zone?, detail: @autoclosure () -> String, into verdict: inout SupervisorVerdict) {
        let key = Fault.Key(kind: kind, zone: zone)
        if var active = faults[key] {
            active.healthyTicks = 0
            faults[key] = active
            return
        }
        let fault = Fault(kind: kind, zone: zone, detail: detail())
        faults[key] = ActiveFault(fault: fault)
        verdict.raised.append(fault)
    }

    // MARK: - Events from outside the reading

    /// A release was commanded: from the next reading on, every zone must
    /// fall below the safe level within the bound. A release while one is
    /// being verified keeps the first deadline.
    mutating func released() {
        if releaseTicksLeft == nil { releaseTicksLeft = timing.releaseVerifyTicks }
    }

    /// A session starts from a reading below the safe level: the tracking
    /// rule watches the cells from here on.
    mutating func sessionStarted() {
        releaseTicksLeft = nil
    }

    /// Raises a fault found outside the reading (a late control loop); true if new.
    mutating func raise(_ fault: Fault) -> Bool {
        var verdict = SupervisorVerdict()
        raise(kind: fault.kind, zone: fault.zone, detail: fault.detail, into: &verdict)
        return !verdict.raised.isEmpty
    }

    /// Latched faults restored after a restart: they need healthy readings
    /// and an acknowledgement again.
    mutating func restore(latched: [Fault]) {
        for fault in latched where fault.kind.latches { faults[fault.key] = ActiveFault(fault: fault) }
    }

    // MARK: - Acknowledgement

    /// Latched faults whose condition has read healthy long enough.
    var acknowledgeable: [Fault] {
        faults.values.filter { $0.fault.kind.latches && $0.healthyTicks >= timing.healthyTicks }.map(\.fault).sorted { $0.description < $1.description }
    }

    /// Latched faults, for persistence.
    var latched: [Fault] {
        faults.values.map(\.fault).filter(\.kind.latches).sorted { $0.description < $1.description }
    }

    /// Clears every latched fault that reads healthy; returns them and the
    /// faults still active.
    mutating func acknowledge() -> (cleared: [Fault], stillActive: [Fault]) {
        let cleared = acknowledgeable
        for fault in cleared { faults[fault.key] = nil }
        return (cleared, faults.values.map(\.fault).sorted { $0.description < $1.description })
    }

    /// The active faults, most severe first, for refusals and reports.
    var activeFaults: [Fault] {
        faults.values.map(\.fault).sorted { ($0.kind.isCritical ? 0 : 1, $0.description) < ($1.kind.isCritical ? 0 : 1, $1.description) }
    }

    // MARK: - The final clamp

    /// The last thing between any command and the hardware: every setpoint
    /// finite, not negative and at most `setpointShareOfCeiling` of its
    /// zone's ceiling in force (itself never above the hard ceiling), and the
    /// motor duty within 0…1; whatever path produced the command.
    static func clamp(_ command: ActuatorCommand, limits: EngineLimits) -> ActuatorCommand {
        var safe = command
        for zone in Zone.allCases {
            let highest = min(limits.ceiling(zone), HardLimits.ceiling(zone)) * HardLimits.setpointShareOfCeiling
            let value = command.pressuresMMHg[zone]
            safe.pressuresMMHg[zone] = value.isFinite ? min(max(0, value), highest) : 0
        }
        safe.motorDuty = command.motorDuty.isFinite ? min(max(0, command.motorDuty), 1) : 0
        return safe
    }
}
