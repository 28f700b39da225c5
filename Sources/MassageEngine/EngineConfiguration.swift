/// How an engine runs. `limits` carries the safety limits (only ever
/// tightened from the hard ones); the rest is timing and bounds.
public struct EngineConfiguration: Sendable, Equatable {
    public var limits: EngineLimits
    /// The control tick, in engine time. Whole milliseconds that divide one
    /// second (1, 2, 4, 5, 8, 10, 20, 25, 40, 50, 100, …), so that step
    /// durations and usage counters are exact. Default 20 ms.
    public var controlTick: Duration
    /// A schedule whose time passed less than this long ago still runs
    /// (late); older ones are reported `session_missed`. Default 2 min.
    public var scheduleGracePeriod: Duration
    /// Events kept for a slow consumer of `MassageEngine.events`; when it is
    /// full the oldest are dropped (and counted). Default 1024.
    public var eventBufferSize: Int
    /// How often (engine time) a running session's usage is checkpointed
    /// into its active-session marker. Default 5 s.
    public var usageCheckpointInterval: Duration
    /// At most this many schedules at once. Default 256.
    public var maxSchedules: Int

    public init(
        limits: EngineLimits = .default,
        controlTick: Duration = .milliseconds(20),
        scheduleGracePeriod: Duration = .seconds(120),
        eventBufferSize: Int = 1024,
        usageCheckpointInterval: Duration = .seconds(5),
        maxSchedules: Int = 256
    ) {
        self.limits = limits
        self.controlTick = controlTick
        self.scheduleGracePeriod = scheduleGracePeriod
        self.eventBufferSize = eventBufferSize
        self.usageCheckpointInterval = usageCheckpointInterval
        self.maxSchedules = maxSchedules
    }

    /// Every problem with the configuration, empty when it is usable.
    public var problems: [String] {
        var problems: [String] = []
        let ms = controlTick.wholeMilliseconds
        if ms <= 0 || ms > 1000 || 1000 % ms != 0 || controlTick != .milliseconds(ms) {
            problems.append("controlTick \(controlTick) must be a whole number of milliseconds that divides one second (e.g. 20 ms)")
        }
        if scheduleGracePeriod < .zero { problems.append("scheduleGracePeriod must not be negative") }
        if eventBufferSize < 1 { problems.append("eventBufferSize must be at least 1") }
        if usageCheckpointInterval < controlTick { problems.append("usageCheckpointInterval must be at least one control tick") }
        if maxSchedules < 0 { problems.append("maxSchedules must not be negative") }
        return problems
    }
}

/// What `start` and `schedule` take: a program id or ad-hoc steps, and an
/// optional session-wide intensity.
public struct SessionRequest: Sendable, Equatable {
    public enum Source: Sendable, Equatable {
        /// A program of the library, by id.
        case program(String)
        /// Ad-hoc steps (the `steps` of `start_session`); the program id is `custom`.
        case steps([StepSpec])
    }

    /// Who asks: the person at the device, or anyone else (an operator, the
    /// console, a schedule). Only a person at the device may start during a
    /// pain lockout: they are there.
    public enum Origin: String, Sendable, Equatable {
        case local
        case remote
    }

    public var source: Source
    /// Session-wide intensity (1–10): the level at the program's peak; every
    /// step's written level is scaled by the same ratio and clamped to what
    /// its zone and technique allow, so gentle steps stay gentler than the
    /// peak; calibration steps are never raised by it.
    public var intensity: Int?
    public var origin: Origin

    public init(source: Source, intensity: Int? = nil, origin: Origin = .remote) {
        self.source = source
        self.intensity = intensity
        self.origin = origin
    }

    public static func program(_ id: String, intensity: Int? = nil, origin: Origin = .remote) -> SessionRequest {
        SessionRequest(source: .program(id), intensity: intensity, origin: origin)
    }

    public static func steps(_ steps: [StepSpec], intensity: Int? = nil, origin: Origin = .remote) -> SessionRequest {
        SessionRequest(source: .steps(steps), intensity: intensity, origin: origin)
    }

    /// The program id used for ad-hoc steps.
    public static let customProgramID = "custom"
}
