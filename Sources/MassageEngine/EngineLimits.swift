/// The limits in force on a device: the hard limits, possibly tightened by
/// configuration. It can only be built through initialisers that refuse
/// any value above its hard limit, so an `EngineLimits` value is always safe.
public struct EngineLimits: Sendable, Equatable {
    /// Pressure ceiling per zone (mmHg), each ≤ `HardLimits.ceilingsMMHg`.
    public private(set) var ceilingsMMHg: ZoneValues<Double>
    /// Longest session, pauses included, ≤ `HardLimits.maxSessionSeconds`.
    public private(set) var maxSessionSeconds: Int
    /// Motor temperature that aborts a session, ≤ `HardLimits.maxMotorTemperatureC`.
    public private(set) var maxMotorTemperatureC: Double
    /// How long remote and scheduled starts are refused after a pain signal,
    /// ≥ `HardLimits.painLockoutSeconds` (configuration may only lengthen it).
    public private(set) var painLockoutSeconds: Int = HardLimits.painLockoutSeconds

    /// The hard limits with the defaults (20 min sessions, 65 °C motor).
    public static let `default` = EngineLimits(
        ceilingsMMHg: HardLimits.ceilingsMMHg,
        maxSessionSeconds: HardLimits.defaultMaxSessionSeconds,
        maxMotorTemperatureC: HardLimits.defaultMaxMotorTemperatureC
    )

    private init(ceilingsMMHg: ZoneValues<Double>, maxSessionSeconds: Int, maxMotorTemperatureC: Double) {
        self.ceilingsMMHg = ceilingsMMHg
        self.maxSessionSeconds = maxSessionSeconds
        self.maxMotorTemperatureC = maxMotorTemperatureC
    }

    /// Tightens the defaults. Every value must be positive and no higher
    /// than its hard limit; all problems are reported together, each naming
    /// its configuration key and the hard limit.
    public init(
        ceilingsMMHg ceilings: [Zone: Double] = [:],
        maxSessionMinutes: Int? = nil,
        maxMotorTemperatureC: Double? = nil,
        painLockoutSeconds: Int? = nil
    ) throws(EngineLimitsError) {
        try self.init(overrides: Overrides(
            ceilingsMMHg: ceilings.isEmpty ? nil : Dictionary(uniqueKeysWithValues: ceilings.map { ($0.key.rawValue, $0.value) }),
            maxSessionMinutes: maxSessionMinutes,
            maxMotorTemperatureC: maxMotorTemperatureC,
            painLockoutSeconds: painLockoutSeconds
        ))
    }

    /// Builds limits from their configuration document (see `Overrides`).
    public init(overrides: Overrides) throws(EngineLimitsError) {
        var limits = EngineLimits.default
        var problems: [EngineLimitsError.Problem] = []

        for (key, value) in (overrides.ceilingsMMHg ?? [:]).sorted(by: { $0.key < $1.key }) {
            let configKey = "\(Overrides.CodingKeys.ceilingsMMHg.rawValue).\(key)"
            guard let zone = Zone(rawValue: key) else {
                problems.append(.init(key: configKey, message: "unknown zone '\(key)'; known: \(Zone.allCases.map(\.rawValue).joined(separator: ", "))"))
                continue
            }
            let hard = HardLimits.ceiling(zone)
            if !(value > 0) {
                problems.append(.init(key: configKey, message: "\(format(value)) mmHg must be positive"))
            } else if value > hard {
                problems.append(.init(key: configKey, message: "\(format(value)) mmHg is above the hard limit of \(format(hard)) mmHg for the \(zone.rawValue); configuration can only lower it", hardLimit: hard))
            } else {
                limits.ceilingsMMHg[zone] = value
            }
        }

        if let minutes = overrides.maxSessionMinutes {
            let key = Overrides.CodingKeys.maxSessionMinutes.rawValue
            let hard = HardLimits.maxSessionSeconds / 60
            if minutes <= 0 {
                problems.append(.init(key: key, message: "\(minutes) min must be positive"))
            } else if minutes > hard {
                problems.append(.init(key: key, message: "\(minutes) min is above the hard limit of \(hard) min; configuration can only lower it", hardLimit: Double(hard)))
            } else {
                limits.maxSessionSeconds = minutes * 60
            }
        }

        if let celsius = overrides.maxMotorTemperatureC {
            let key = Overrides.CodingKeys.maxMotorTemperatureC.rawValue
            let hard = HardLimits.maxMotorTemperatureC
            let lowest = 30.0
            if !(celsius >= lowest) {
                problems.append(.init(key: key, message: "\(format(celsius)) °C is below \(format(lowest)) °C, too close to room temperature for a motor to run"))
            } else if celsius > hard {
                problems.append(.init(key: key, message: "\(format(celsius)) °C is above the hard limit of \(format(hard)) °C; configuration can only lower it", hardLimit: hard))
            } else {
                limits.maxMotorTemperatureC = celsius
            }
        }

        if let seconds = overrides.painLockoutSeconds {
            let key = Overrides.CodingKeys.painLockoutSeconds.rawValue
            if seconds < HardLimits.painLockoutSeconds {
                problems.append(.init(key: key, message: "\(seconds) s is below the compiled minimum of \(HardLimits.painLockoutSeconds) s; configuration can only lengthen the pain lockout", hardLimit: Double(HardLimits.painLockoutSeconds)))
            } else if seconds > HardLimits.maxPainLockoutSeconds {
                problems.append(.init(key: key, message: "\(seconds) s is above \(HardLimits.maxPainLockoutSeconds) s (one hour)", hardLimit: Double(HardLimits.maxPainLockoutSeconds)))
            } else {
                limits.painLockoutSeconds = seconds
            }
        }

        if !problems.isEmpty { throw EngineLimitsError(problems: problems) }
        self = limits
    }

    /// New sessions are refused after an overheat until the motor is below this.
    public var motorResumeTemperatureC: Double { maxMotorTemperatureC - HardLimits.motorResumeHysteresisC }

    @inlinable public func ceiling(_ zone: Zone) -> Double { ceilingsMMHg[zone] }

    /// Highest intensity level whose pressure on `zone` stays within its ceiling.
    public func maxLevel(on zone: Zone) -> Int {
        var level = HardLimits.intensityLevels.upperBound
        while level > 0, HardLimits.pressure(level: level, zone: zone) > ceiling(zone) { level -= 1 }
        return level
    }

    /// Highest level a step of `technique` on `target` may use: the lower of
    /// the zone's ceiling and the technique's suitability limit.
    public func maxLevel(_ technique: Technique, on target: Target) -> Int {
        min(maxLevel(on: target.zone), Suitability.of(technique, on: target).maxIntensity)
    }

    /// The configuration document that tightens the limits. Keys are the
    /// ones of the agent's desired config (`max_session_minutes`, …).
    public struct Overrides: Codable, Sendable, Equatable {
        /// Ceiling per zone id, mmHg.
        public var ceilingsMMHg: [String: Double]?
        public var maxSessionMinutes: Int?
        public var maxMotorTemperatureC: Double?
        /// Pain lockout, seconds (lengthen only).
        public var painLockoutSeconds: Int?

        public enum CodingKeys: String, CodingKey, CaseIterable {
            case ceilingsMMHg = "ceilings_mmhg"
            case maxSessionMinutes = "max_session_minutes"
            case maxMotorTemperatureC = "max_motor_temp_c"
            case painLockoutSeconds = "pain_lockout_s"
        }

        public init(ceilingsMMHg: [String: Double]? = nil, maxSessionMinutes: Int? = nil, maxMotorTemperatureC: Double? = nil, painLockoutSeconds: Int? = nil) {
            self.ceilingsMMHg = ceilingsMMHg
            self.maxSessionMinutes = maxSessionMinutes
            self.maxMotorTemperatureC = maxMotorTemperatureC
            self.painLockoutSeconds = painLockoutSeconds
        }
    }
}

/// Configuration tried to set a limit it may not: above a hard limit, not
/// positive, or for an unknown zone. Lists every problem.
public struct EngineLimitsError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        /// The configuration key, e.g. `ceilings_mmhg.calf` or `max_session_minutes`.
        public var key: String
        public var message: String
        /// The hard limit the value went over, when that was the problem.
        public var hardLimit: Double?

        public init(key: String, message: String, hardLimit: Double? = nil) {
            self.key = key
            self.message = message
            self.hardLimit = hardLimit
        }

        public var description: String { "\(key): \(message)" }
    }

    public var problems: [Problem]

    public var description: String { problems.map(\.description).joined(separator: "; ") }
}

func format(_ value: Double) -> String {
    value.rounded() == value && abs(value) < 1e9 ? String(Int(value)) : String(value)
}
