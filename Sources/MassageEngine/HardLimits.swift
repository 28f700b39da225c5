/// Limits compiled into the engine. No configuration can raise them:
/// `EngineLimits` may only tighten the ones marked configurable. The
/// reasoning for each number is in docs/engine.md.
public enum HardLimits {
    /// Absolute pressure ceiling: no zone may ever go above this.
    public static let absoluteCeilingMMHg: Double = 180

    /// Hard pressure ceiling per zone (mmHg). Soft muscle takes the most;
    /// bone just under the skin (shin), a tendon (achilles) and the heel
    /// bone under its fat pad take much less. Configurable (lower only).
    public static let ceilingsMMHg = ZoneValues<Double> { zone in
        switch zone {
        case .thigh: 180
        case .calf: 160
        case .arch: 140
        case .heel: 120
        case .shin: 80
        case .achilles: 60
        }
    }

    /// Hard maximum session length, pauses included (30 min). Configurable (lower only).
    public static let maxSessionSeconds = 30 * 60
    /// The session maximum when configuration sets none (20 min).
    public static let defaultMaxSessionSeconds = 20 * 60

    /// Hard maximum motor temperature (°C). Configurable (lower only).
    public static let maxMotorTemperatureC: Double = 70
    /// The motor maximum when configuration sets none.
    public static let defaultMaxMotorTemperatureC: Double = 65
    /// After an overheat, new sessions are refused until the motor is this
    /// much below its maximum.
    public static let motorResumeHysteresisC: Double = 10

    /// Commands never go above this share of a zone's ceiling in force (the
    /// final clamp before the hardware): the last 5 % are the regulation
    /// margin between the highest setpoint and the overpressure trip, which
    /// sits at the ceiling itself. Level 10 therefore runs at 95 % of it.
    public static let setpointShareOfCeiling: Double = 0.95
    /// Overpressure trips at the ceiling: measured pressure above the
    /// ceiling in force on more than `overpressureToleratedTicks` of the last
    /// `overpressureWindowTicks` readings aborts and latches (a sliding
    /// window: one low reading between spikes does not reset it).
    public static let overpressureToleratedTicks = 2
    public static let overpressureWindowTicks = 10

    /// Measured must follow commanded. Above: measured higher than the
    /// commanded envelope (the setpoint, followed downwards with the time
    /// constant `trackingEnvelopeSeconds`) by more than the margin, for the trip time,
    /// means a runaway pump or a valve that does not open (`pressure_tracking`).
    /// Below: measured under half the slowly-followed setpoint (less the
    /// margin) for `followLossSeconds` means a frozen sensor, a leak or a
    /// dead pump.
    public static let trackingMarginMMHg: Double = 15
    public static let trackingEnvelopeSeconds: Double = 0.5
    public static let trackingTripSeconds: Double = 0.1
    public static let followLossSeconds: Double = 1

    /// After every release, every zone must read below `releaseSafeMMHg`
    /// within `releaseVerifySeconds`, or the engine raises a latched,
    /// critical `release_failed` fault and releases again on every tick.
    public static let releaseSafeMMHg: Double = 10
    public static let releaseVerifySeconds: Double = 0.5

    /// A control loop more than this many ticks late releases everything and
    /// aborts the session (`control_overrun`), latched.
    public static let controlOverrunTicks = 5

    /// After a `pain_signal` abort, remote and scheduled starts are refused
    /// for this long (the minimum and the default; configuration may only
    /// lengthen it, up to `maxPainLockoutSeconds`). A person at the device may
    /// still start a session.
    public static let painLockoutSeconds = 120
    public static let maxPainLockoutSeconds = 3600

    /// A soft stop ramps every zone to zero in this time (the brief allows at most 2 s).
    public static let softStopSeconds: Double = 1.5
    /// The promise made to callers: a soft stop never takes longer.
    public static let maxSoftStopSeconds: Double = 2
    /// Soft start: pressure rises at most this fast (0 → 160 mmHg takes 4 s).
    public static let rampUpMMHgPerSecond: Double = 40
    /// Pressure falls at most this fast outside an emergency release; fast
    /// enough that any pressure reaches zero within `softStopSeconds`.
    public static let rampDownMMHgPerSecond: Double = absoluteCeilingMMHg / softStopSeconds

    /// A sensor whose sample does not change for this long is stale.
    public static let sensorStaleSeconds: Double = 0.1
    /// A latched fault may be acknowledged once its condition has read
    /// healthy for this long; it clears only when someone acknowledges it.
    public static let faultClearSeconds: Double = 1
    /// Readings outside these ranges are implausible.
    public static let plausiblePressureMMHg: ClosedRange<Double> = -10...400
    public static let plausibleTemperatureC: ClosedRange<Double> = -40...150

    /// Intensity levels.
    public static let intensityLevels: ClosedRange<Int> = 1...10
    /// Breathing cues a step may carry (breaths per minute).
    public static let breathingBPM: ClosedRange<Int> = 4...20
    /// Relaxation programs use slow cues: at most this many breaths per minute.
    public static let relaxationMaxBreathingBPM = 8
    /// A calibration step (the first step at a point) is gentle and short.
    public static let calibrationMaxIntensity = 3
    public static let calibrationMaxSeconds = 60
    /// Bounds on what a program may hold.
    public static let maxStepsPerProgram = 100

    /// The hard ceiling for a zone.
    @inlinable public static func ceiling(_ zone: Zone) -> Double { ceilingsMMHg[zone] }

    /// Target pressure for an intensity level on a zone: level 10 is the
    /// zone's hard ceiling, level 1 a tenth of it. The map is fixed: a lowered
    /// ceiling refuses the upper levels instead of squeezing the scale, so
    /// "level 4 on the calf" means the same pressure on every massager.
    @inlinable public static func pressure(level: Int, zone: Zone) -> Double {
        ceiling(zone) * Double(level) / 10
    }
}
