/// A string vocabulary of the contract that can grow without breaking
/// decoders: any string decodes, `known` lists the values this version
/// defines, and new values are added as `static let`s.
public protocol OpenVocabulary: RawRepresentable, Codable, Hashable, Sendable, CustomStringConvertible,
    ExpressibleByStringLiteral where RawValue == String
{
    init(rawValue: String)
    /// The values this version of the contract defines, in documentation order.
    static var known: [Self] { get }
}

extension OpenVocabulary {
    public init(stringLiteral value: String) { self.init(rawValue: value) }
    public var description: String { rawValue }
    public var isKnown: Bool { Self.known.contains(self) }
    /// `a, b, c`: the known values, for error messages.
    public static var knownList: String { known.map(\.rawValue).joined(separator: ", ") }

    /// Any string of at most `ProtocolLimits.maxNameBytes` (a value this
    /// version does not know is kept; one longer than any name is refused).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let raw = try c.decode(String.self)
        guard raw.utf8.count <= ProtocolLimits.maxNameBytes else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: nameExpectation)
        }
        self.init(rawValue: raw)
    }
}

/// The stable error codes of a command reply (DESIGN.md §3).
public struct ErrorCode: OpenVocabulary {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// Not JSON, not an object, too large, a missing or mistyped `id` /
    /// `action`, an unknown top-level field, a malformed `expires_at` or `reply_to`.
    public static let badRequest: ErrorCode = "bad_request"
    /// `action` is not one the agent knows.
    public static let unknownAction: ErrorCode = "unknown_action"
    /// `params` do not fit the action: wrong type, out of range, unknown
    /// program, unsuitable step, unknown field, a bad or past time.
    public static let invalidParams: ErrorCode = "invalid_params"
    /// A session is running, or a scheduled slot is taken.
    public static let busy: ErrorCode = "busy"
    /// The device cannot safely act: a fault, over-temperature, cooldown.
    public static let unsafe: ErrorCode = "unsafe"
    /// No such session or schedule (or nothing running to stop/pause/resume).
    public static let notFound: ErrorCode = "not_found"
    /// `expires_at` passed before the agent received the command.
    public static let expired: ErrorCode = "expired"
    /// The agent failed in a way that is not the caller's fault.
    public static let `internal`: ErrorCode = "internal"

    public static let known: [ErrorCode] = [
        .badRequest, .unknownAction, .invalidParams, .busy, .unsafe, .notFound, .expired, .internal,
    ]
}

/// Command actions (DESIGN.md §3).
public struct Action: OpenVocabulary {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let startSession: Action = "start_session"
    public static let scheduleSession: Action = "schedule_session"
    public static let cancelScheduled: Action = "cancel_scheduled"
    public static let stopSession: Action = "stop_session"
    public static let pauseSession: Action = "pause_session"
    public static let resumeSession: Action = "resume_session"
    public static let adjustIntensity: Action = "adjust_intensity"
    public static let getStatus: Action = "get_status"
    public static let resync: Action = "resync"
    public static let ping: Action = "ping"
    /// Acknowledges the device's latched faults (an operator looked): clears
    /// every one whose condition reads healthy again.
    public static let clearFault: Action = "clear_fault"

    public static let known: [Action] = [
        .startSession, .scheduleSession, .cancelScheduled, .stopSession, .pauseSession, .resumeSession,
        .adjustIntensity, .getStatus, .resync, .ping, .clearFault,
    ]
}

/// The `type` of an event (DESIGN.md §3).
public struct EventType: OpenVocabulary {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let sessionScheduled: EventType = "session_scheduled"
    public static let sessionStarted: EventType = "session_started"
    public static let sessionStep: EventType = "session_step"
    public static let sessionPaused: EventType = "session_paused"
    public static let sessionResumed: EventType = "session_resumed"
    public static let sessionCompleted: EventType = "session_completed"
    public static let sessionAborted: EventType = "session_aborted"
    public static let sessionMissed: EventType = "session_missed"
    public static let faultRaised: EventType = "fault_raised"
    public static let faultCleared: EventType = "fault_cleared"
    public static let configApplied: EventType = "config_applied"
    public static let configRejected: EventType = "config_rejected"
    public static let configRolledBack: EventType = "config_rolled_back"

    public static let known: [EventType] = [
        .sessionScheduled, .sessionStarted, .sessionStep, .sessionPaused, .sessionResumed, .sessionCompleted,
        .sessionAborted, .sessionMissed, .faultRaised, .faultCleared, .configApplied, .configRejected,
        .configRolledBack,
    ]

    /// Events about one session: they carry `session_id` and `program`.
    public var isSessionEvent: Bool {
        [.sessionStarted, .sessionStep, .sessionPaused, .sessionResumed, .sessionCompleted, .sessionAborted]
            .contains(self)
    }
}

/// Why a session was aborted (`reason` of `session_aborted`, keys of
/// `usage.sessions.aborted`).
public struct SessionAbortReason: OpenVocabulary {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// The person pressed stop or signalled pain.
    public static let painSignal: SessionAbortReason = "pain_signal"
    /// The pressure sensor read above the zone's ceiling.
    public static let overpressure: SessionAbortReason = "overpressure"
    /// The motor went over its temperature limit.
    public static let overheat: SessionAbortReason = "overheat"
    /// A sensor failed or gave implausible readings.
    public static let sensorFault: SessionAbortReason = "sensor_fault"
    /// An actuator or other hardware failed.
    public static let hardwareFault: SessionAbortReason = "hardware_fault"
    /// The session reached the maximum session length.
    public static let timeLimit: SessionAbortReason = "time_limit"
    /// A `stop_session` command.
    public static let remoteStop: SessionAbortReason = "remote_stop"
    /// The agent was asked to shut down (SIGTERM/SIGINT) during the session.
    public static let shutdown: SessionAbortReason = "shutdown"
    /// The agent died during the session; recorded at its next start.
    public static let interrupted: SessionAbortReason = "interrupted"
    /// The control loop ran too late to be trusted with pressure on.
    public static let controlOverrun: SessionAbortReason = "control_overrun"

    public static let known: [SessionAbortReason] = [
        .painSignal, .overpressure, .overheat, .sensorFault, .hardwareFault, .timeLimit, .remoteStop, .shutdown,
        .interrupted, .controlOverrun,
    ]
}

/// What the device's session runner is doing (telemetry `session_state`).
public struct SessionPhase: OpenVocabulary {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let idle: SessionPhase = "idle"
    public static let running: SessionPhase = "running"
    public static let paused: SessionPhase = "paused"
    /// Soft stop: pressure ramping down before the session ends.
    public static let stopping: SessionPhase = "stopping"
    /// Waiting after a session or an over-temperature before another may start.
    public static let cooldown: SessionPhase = "cooldown"
    /// A fault keeps the device from running sessions.
    public static let fault: SessionPhase = "fault"
    /// A pain signal ended the last session: remote and scheduled starts wait.
    public static let lockedOut: SessionPhase = "locked_out"

    public static let known: [SessionPhase] = [.idle, .running, .paused, .stopping, .cooldown, .fault, .lockedOut]
}

/// Why an agent went offline (status `reason`).
public struct OfflineReason: OpenVocabulary {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// A clean shutdown (SIGTERM/SIGINT). The will carries no reason.
    public static let shutdown: OfflineReason = "shutdown"

    public static let known: [OfflineReason] = [.shutdown]
}

/// What an agent can do (status `capabilities`), so a console can check
/// before it sends an action.
public struct Capability: OpenVocabulary {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// `start_session` / `schedule_session` with `steps`.
    public static let customSteps: Capability = "custom_steps"
    /// `schedule_session` / `cancel_scheduled`.
    public static let schedule: Capability = "schedule"
    /// `pause_session` / `resume_session`.
    public static let pause: Capability = "pause"
    /// `adjust_intensity`.
    public static let adjustIntensity: Capability = "adjust_intensity"
    /// Steps may carry a breathing cue the device shows.
    public static let breathingCue: Capability = "breathing_cue"
    /// Telemetry carries measured `pressure_mmhg`.
    public static let pressureSensor: Capability = "pressure_sensor"

    public static let known: [Capability] = [
        .customSteps, .schedule, .pause, .adjustIntensity, .breathingCue, .pressureSensor,
    ]
}

/// `online` / `offline`: an agent's status `state`, the console's `_console/state`.
public enum PresenceState: String, Codable, Sendable, Hashable, CaseIterable {
    case online, offline
}

/// The `state` of `config/reported`.
public enum ConfigApplyState: String, Codable, Sendable, Hashable, CaseIterable {
    /// The version is applied and passed the self-check.
    case applied
    /// Valid, waiting for the running session to end.
    case pending
    /// Refused by validation (see `reasons`); the previous config stays.
    case rejected
    /// Applied, failed the self-check, and the previous config was restored.
    case rolledBack = "rolled_back"
}
