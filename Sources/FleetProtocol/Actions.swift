import Foundation
import MassageEngine

// MARK: Params

/// What a session runs: a program by id, or custom steps. Exactly one.
public enum SessionPlan: Sendable, Equatable {
    case program(Identifier)
    case steps([StepSpec])
}

/// `start_session` params: `program` (an id) or `steps` (custom steps),
/// exactly one, and an optional `intensity` 1–10 for the whole session.
public struct StartSessionParams: Codable, Sendable, Equatable {
    public var plan: SessionPlan
    /// Overrides every step's intensity for this session (1–10).
    public var intensity: Int?

    public init(plan: SessionPlan, intensity: Int? = nil) {
        self.plan = plan
        self.intensity = intensity
    }

    public static func program(_ id: Identifier, intensity: Int? = nil) -> StartSessionParams {
        .init(plan: .program(id), intensity: intensity)
    }

    public static func steps(_ steps: [StepSpec], intensity: Int? = nil) -> StartSessionParams {
        .init(plan: .steps(steps), intensity: intensity)
    }

    public var program: Identifier? {
        if case .program(let id) = plan { return id }
        return nil
    }

    public var steps: [StepSpec]? {
        if case .steps(let steps) = plan { return steps }
        return nil
    }

    public static let knownKeys = ["program", "steps", "intensity"]

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: AnyCodingKey.self)
        (plan, intensity) = try Self.decodeSession(c)
    }

    /// Shared with `schedule_session`.
    static func decodeSession(_ c: KeyedDecodingContainer<AnyCodingKey>) throws -> (SessionPlan, Int?) {
        let programKey = AnyCodingKey("program"), stepsKey = AnyCodingKey("steps")
        let hasProgram = c.contains(programKey) && (try? c.decodeNil(forKey: programKey)) == false
        let hasSteps = c.contains(stepsKey) && (try? c.decodeNil(forKey: stepsKey)) == false
        let plan: SessionPlan
        switch (hasProgram, hasSteps) {
        case (true, true):
            throw ProtocolError.invalidParams("params: give either \"program\" or \"steps\", not both")
        case (false, false):
            throw ProtocolError.invalidParams(
                "params: missing field \"program\" (a program id) or \"steps\" (custom steps)")
        case (true, false):
            let expectation = "expected a program id matching \(Identifier.rule)"
            let raw = try c.decodeChecked(String.self, programKey, expectation) { Identifier.isValid($0) }
            plan = .program(Identifier(rawValue: raw)!)
        case (false, true):
            let raw = try c.decode(JSONValue.self, forKey: stepsKey)
            switch SpecChecks.steps(raw, path: "params.steps") {
            case .success(let steps): plan = .steps(steps)
            case .failure(let reasons): throw ProtocolError.invalidParams(reasons.reasons.joined(separator: "; "))
            }
        }
        return (plan, try c.decodeIntIfPresent(AnyCodingKey("intensity"), in: 1...10))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: AnyCodingKey.self)
        switch plan {
        case .program(let id): try c.encode(id, forKey: AnyCodingKey("program"))
        case .steps(let steps): try c.encode(steps, forKey: AnyCodingKey("steps"))
        }
        try c.encodeIfPresent(intensity, forKey: AnyCodingKey("intensity"))
    }
}

/// `schedule_session` params: those of `start_session` plus `at`, the
/// RFC 3339 time to start.
public struct ScheduleSessionParams: Codable, Sendable, Equatable {
    public var session: StartSessionParams
    public var at: Date

    public init(session: StartSessionParams, at: Date) {
        self.session = session
        self.at = RFC3339.normalized(at)
    }

    public static let knownKeys = StartSessionParams.knownKeys + ["at"]

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: AnyCodingKey.self)
        let (plan, intensity) = try StartSessionParams.decodeSession(c)
        session = StartSessionParams(plan: plan, intensity: intensity)
        at = try c.decodeRFC3339(forKey: AnyCodingKey("at"))
    }

    public func encode(to encoder: any Encoder) throws {
        try session.encode(to: encoder)
        var c = encoder.container(keyedBy: AnyCodingKey.self)
        try c.encodeRFC3339(at, forKey: AnyCodingKey("at"))
    }
}

/// `cancel_scheduled` params: the `schedule_id` a `schedule_session` returned.
public struct CancelScheduledParams: Codable, Sendable, Equatable {
    public var scheduleID: String

    public init(scheduleID: String) { self.scheduleID = scheduleID }

    enum CodingKeys: String, CodingKey { case scheduleID = "schedule_id" }
    public static let knownKeys = ["schedule_id"]

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        scheduleID = try c.decodeChecked(
            String.self, .scheduleID, "expected a schedule id (a non-empty string of at most \(ProtocolLimits.maxIDBytes) bytes)"
        ) { !$0.isEmpty && $0.utf8.count <= ProtocolLimits.maxIDBytes }
    }
}

/// `stop_session`, `pause_session`, `resume_session` params: optionally
/// the `session_id` the command is meant for; when given and it is not the
/// running session, the reply is `not_found` (a stale click never stops
/// somebody else's session).
public struct SessionControlParams: Codable, Sendable, Equatable {
    public var sessionID: String?

    public init(sessionID: String? = nil) { self.sessionID = sessionID }

    enum CodingKeys: String, CodingKey { case sessionID = "session_id" }
    public static let knownKeys = ["session_id"]

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        sessionID = try c.decodeCheckedIfPresent(String.self, .sessionID, "expected a session id (a non-empty string)") {
            !$0.isEmpty
        }
    }
}

/// `adjust_intensity` params: the new `intensity` 1–10 for the running
/// session (still capped by the zone ceilings), optionally its `session_id`.
public struct AdjustIntensityParams: Codable, Sendable, Equatable {
    public var intensity: Int
    public var sessionID: String?

    public init(intensity: Int, sessionID: String? = nil) {
        self.intensity = intensity
        self.sessionID = sessionID
    }

    enum CodingKeys: String, CodingKey {
        case intensity
        case sessionID = "session_id"
    }

    public static let knownKeys = ["intensity", "session_id"]

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        intensity = try c.decodeInt(.intensity, in: 1...10)
        sessionID = try c.decodeCheckedIfPresent(String.self, .sessionID, "expected a session id (a non-empty string)") {
            !$0.isEmpty
        }
    }
}

// MARK: The typed request

/// A command's action with its decoded, structurally valid params.
public enum CommandRequest: Sendable, Equatable {
    case startSession(StartSessionParams)
    case scheduleSession(ScheduleSessionParams)
    case cancelScheduled(CancelScheduledParams)
    case stopSession(SessionControlParams)
    case pauseSession(SessionControlParams)
    case resumeSession(SessionControlParams)
    case adjustIntensity(AdjustIntensityParams)
    case getStatus
    /// Republish status, usage and reported config.
    case resync
    case ping
    /// Acknowledge the latched faults.
    case clearFault

    public var action: Action {
        switch self {
        case .startSession: .startSession
        case .scheduleSession: .scheduleSession
        case .cancelScheduled: .cancelScheduled
        case .stopSession: .stopSession
        case .pauseSession: .pauseSession
        case .resumeSession: .resumeSession
        case .adjustIntensity: .adjustIntensity
        case .getStatus: .getStatus
        case .resync: .resync
        case .ping: .ping
        case .clearFault: .clearFault
        }
    }

    /// The params as JSON, as a command carries them.
    public var params: JSONValue {
        let encoded: JSONValue?
        switch self {
        case .startSession(let p): encoded = try? JSONValue(encoding: p)
        case .scheduleSession(let p): encoded = try? JSONValue(encoding: p)
        case .cancelScheduled(let p): encoded = try? JSONValue(encoding: p)
        case .stopSession(let p), .pauseSession(let p), .resumeSession(let p): encoded = try? JSONValue(encoding: p)
        case .adjustIntensity(let p): encoded = try? JSONValue(encoding: p)
        case .getStatus, .resync, .ping, .clearFault: encoded = nil
        }
        return encoded ?? .object([:])
    }

    /// The params keys each action accepts (an empty list: no params).
    public static func knownParams(for action: Action) -> [String]? {
        switch action {
        case .startSession: StartSessionParams.knownKeys
        case .scheduleSession: ScheduleSessionParams.knownKeys
        case .cancelScheduled: CancelScheduledParams.knownKeys
        case .stopSession, .pauseSession, .resumeSession: SessionControlParams.knownKeys
        case .adjustIntensity: AdjustIntensityParams.knownKeys
        case .getStatus, .resync, .ping, .clearFault: []
        default: nil
        }
    }

    /// Decodes `params` for `action`. An unknown action is `unknown_action`;
    /// anything wrong with the params (not an object, an unknown field, a
    /// wrong type, out of range, both or neither of program/steps) is
    /// `invalid_params` with a message naming the field (`params.…`).
    /// Absent or null params read as `{}`.
    public init(action: Action, params: JSONValue) throws(ProtocolError) {
        guard let known = Self.knownParams(for: action) else { throw .unknownAction(action.rawValue) }
        let object: [String: JSONValue]
        switch params {
        case .null: object = [:]
        case .object(let members): object = members
        default: throw .invalidParams("params: expected an object, got \(params.briefDescription)")
        }
        if let extra = object.keys.filter({ !known.contains($0) }).sorted().first {
            let takes = known.isEmpty ? "\(action) takes no params" : "\(action) takes \(known.joined(separator: ", "))"
            throw .invalidParams("params.\(extra): unknown field; \(takes)")
        }
        let value = JSONValue.object(object)
        switch action {
        case .startSession: self = .startSession(try Self.decode(StartSessionParams.self, value))
        case .scheduleSession: self = .scheduleSession(try Self.decode(ScheduleSessionParams.self, value))
        case .cancelScheduled: self = .cancelScheduled(try Self.decode(CancelScheduledParams.self, value))
        case .stopSession: self = .stopSession(try Self.decode(SessionControlParams.self, value))
        case .pauseSession: self = .pauseSession(try Self.decode(SessionControlParams.self, value))
        case .resumeSession: self = .resumeSession(try Self.decode(SessionControlParams.self, value))
        case .adjustIntensity: self = .adjustIntensity(try Self.decode(AdjustIntensityParams.self, value))
        case .getStatus: self = .getStatus
        case .resync: self = .resync
        case .clearFault: self = .clearFault
        default: self = .ping
        }
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ params: JSONValue) throws(ProtocolError) -> T {
        do {
            return try FleetJSON.sharedDecoder.decode(T.self, from: FleetJSON.encode(params))
        } catch let error as ProtocolError {
            throw error
        } catch let error as DecodingError {
            throw .invalidParams(error.readableMessage(root: params, prefix: "params"))
        } catch {
            throw .invalidParams("params: \(error)")
        }
    }
}

// MARK: Results

/// One fault in a `clear_fault` result.
public struct FaultReport: Codable, Sendable, Equatable {
    /// The fault kind (`sensor_fault`, `release_failed`, …).
    public var fault: String
    public var zone: String?
    public var detail: String

    public init(fault: String, zone: String?, detail: String) {
        self.fault = fault
        self.zone = zone
        self.detail = detail
    }
}

/// `clear_fault` result: what the acknowledgement cleared and what is still
/// active (not yet healthy, or an overheat cooling down).
public struct ClearFaultResult: Codable, Sendable, Equatable {
    public var cleared: [FaultReport]
    public var stillActive: [FaultReport]

    enum CodingKeys: String, CodingKey {
        case cleared
        case stillActive = "still_active"
    }

    public init(cleared: [FaultReport], stillActive: [FaultReport]) {
        self.cleared = cleared
        self.stillActive = stillActive
    }
}

/// `start_session` result.
public struct StartSessionResult: Codable, Sendable, Equatable {
    public var sessionID: String
    /// The program id, or `_custom` for custom steps.
    public var program: String
    /// Planned length in seconds (without pauses).
    public var durationSeconds: Int?
    public var intensity: Int?

    enum CodingKeys: String, CodingKey {
        case sessionID = "session_id"
        case program
        case durationSeconds = "duration_s"
        case intensity
    }

    public init(sessionID: String, program: String, durationSeconds: Int? = nil, intensity: Int? = nil) {
        self.sessionID = sessionID
        self.program = program
        self.durationSeconds = durationSeconds
        self.intensity = intensity
    }
}

/// A scheduled session (`schedule_session` result, `get_status`'s `scheduled`).
public struct ScheduleEntry: Codable, Sendable, Equatable {
    public var scheduleID: String
    public var at: Date
    public var program: String

    enum CodingKeys: String, CodingKey {
        case scheduleID = "schedule_id"
        case at, program
    }

    public init(scheduleID: String, at: Date, program: String) {
        self.scheduleID = scheduleID
        self.at = RFC3339.normalized(at)
        self.program = program
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        scheduleID = try c.decode(String.self, forKey: .scheduleID)
        at = try c.decodeRFC3339(forKey: .at)
        program = try c.decode(String.self, forKey: .program)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(scheduleID, forKey: .scheduleID)
        try c.encodeRFC3339(at, forKey: .at)
        try c.encode(program, forKey: .program)
    }
}

/// `cancel_scheduled` result.
public struct CancelScheduledResult: Codable, Sendable, Equatable {
    public var scheduleID: String
    enum CodingKeys: String, CodingKey { case scheduleID = "schedule_id" }
    public init(scheduleID: String) { self.scheduleID = scheduleID }
}

/// `stop_session`, `pause_session`, `resume_session`, `adjust_intensity` result.
public struct SessionControlResult: Codable, Sendable, Equatable {
    public var sessionID: String
    /// The session state after the command (`stopping`, `paused`, `running`).
    public var sessionState: SessionPhase
    /// The session intensity after the command.
    public var intensity: Int?

    enum CodingKeys: String, CodingKey {
        case sessionID = "session_id"
        case sessionState = "session_state"
        case intensity
    }

    public init(sessionID: String, sessionState: SessionPhase, intensity: Int? = nil) {
        self.sessionID = sessionID
        self.sessionState = sessionState
        self.intensity = intensity
    }
}

/// `get_status` result: the status body, the session and the schedule.
public struct GetStatusResult: Codable, Sendable, Equatable {
    public var agentVersion: String
    public var epoch: UInt64
    public var programs: [String]
    public var configVersion: UInt64
    public var capabilities: [Capability]
    public var sessionState: SessionPhase
    public var sessionID: String?
    public var program: String?
    public var scheduled: [ScheduleEntry]

    enum CodingKeys: String, CodingKey {
        case agentVersion = "agent_version"
        case epoch, programs
        case configVersion = "config_version"
        case capabilities
        case sessionState = "session_state"
        case sessionID = "session_id"
        case program, scheduled
    }

    public init(agentVersion: String, epoch: UInt64, programs: [String], configVersion: UInt64,
                capabilities: [Capability], sessionState: SessionPhase, sessionID: String? = nil,
                program: String? = nil, scheduled: [ScheduleEntry] = [])
    {
        self.agentVersion = agentVersion
        self.epoch = epoch
        self.programs = programs
        self.configVersion = configVersion
        self.capabilities = capabilities
        self.sessionState = sessionState
        self.sessionID = sessionID
        self.program = program
        self.scheduled = scheduled
    }
}

/// `resync` result: the topics republished.
public struct ResyncResult: Codable, Sendable, Equatable {
    public var republished: [String]
    public init(republished: [String]) { self.republished = republished }
}

/// `ping` result.
public struct PingResult: Codable, Sendable, Equatable {
    public var epoch: UInt64
    public init(epoch: UInt64) { self.epoch = epoch }
}
