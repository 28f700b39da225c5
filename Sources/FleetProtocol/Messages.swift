import Foundation

// MARK: status

/// `{root}/{site}/{device}/status` (agent → console, QoS 1, retained).
/// Birth: `online` with version, programs, config version, capabilities.
/// Will (set at connect): `offline`, same epoch. Clean shutdown: `offline`
/// with `reason: "shutdown"`.
public struct Status: AgentMessage {
    public static let topicKind = DeviceTopicKind.status

    public var state: PresenceState
    /// The agent's version, e.g. `1.2.0`. Always on `online`.
    public var agentVersion: String?
    /// Ids of the programs the device can run (built-in and configured). Always on `online`.
    public var programs: [String]?
    /// The applied desired-config version (0: none applied yet). Always on `online`.
    public var configVersion: UInt64?
    /// What this agent supports; see `Capability`. Always on `online`.
    public var capabilities: [Capability]?
    /// Why the agent went offline; absent in the will.
    public var reason: OfflineReason?

    enum CodingKeys: String, CodingKey {
        case state
        case agentVersion = "agent_version"
        case programs
        case configVersion = "config_version"
        case capabilities
        case reason
    }

    public init(state: PresenceState, agentVersion: String? = nil, programs: [String]? = nil,
                configVersion: UInt64? = nil, capabilities: [Capability]? = nil, reason: OfflineReason? = nil)
    {
        self.state = state
        self.agentVersion = agentVersion
        self.programs = programs
        self.configVersion = configVersion
        self.capabilities = capabilities
        self.reason = reason
    }

    /// Reads a status; `config_version` is bounded (docs/protocol.md, "Limits").
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        state = try c.decode(PresenceState.self, forKey: .state)
        agentVersion = try c.decodeNameIfPresent(.agentVersion)
        programs = try c.decodeNamesIfPresent(.programs)
        configVersion = try c.decodeCountIfPresent(.configVersion)
        capabilities = try c.decodeIfPresent([Capability].self, forKey: .capabilities)
        reason = try c.decodeIfPresent(OfflineReason.self, forKey: .reason)
    }

    /// The birth message.
    public static func online(agentVersion: String, programs: [String], configVersion: UInt64,
                              capabilities: [Capability]) -> Status
    {
        Status(state: .online, agentVersion: agentVersion, programs: programs, configVersion: configVersion,
               capabilities: capabilities)
    }

    /// The will (`reason` nil) or the clean-shutdown message (`.shutdown`).
    public static func offline(reason: OfflineReason? = nil, agentVersion: String? = nil) -> Status {
        Status(state: .offline, agentVersion: agentVersion, reason: reason)
    }
}

// MARK: telemetry

/// The step a session is on, as telemetry reports it.
public struct CurrentStep: Codable, Sendable, Equatable {
    /// 0-based index into the program's steps.
    public var index: Int
    /// The step's target as the program names it: a zone or a point id.
    public var target: String
    /// The zone that acts (the point's zone when `target` is a point).
    public var zone: String
    /// The acupressure point, when the target is one (e.g. `gb34`).
    public var point: String?
    public var technique: String
    /// The effective intensity, 1–10 (after the person's adjustments).
    public var intensity: Int
    /// Seconds left in this step.
    public var remainingSeconds: Double?

    enum CodingKeys: String, CodingKey {
        case index, target, zone, point, technique, intensity
        case remainingSeconds = "remaining_s"
    }

    public init(index: Int, target: String, zone: String, point: String? = nil, technique: String, intensity: Int,
                remainingSeconds: Double? = nil)
    {
        self.index = index
        self.target = target
        self.zone = zone
        self.point = point
        self.technique = technique
        self.intensity = intensity
        self.remainingSeconds = remainingSeconds
    }

    /// Reads a step; `index`, `intensity` and `remaining_s` are bounded.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        index = try c.decodeInt(.index, in: ProtocolLimits.stepIndex)
        target = try c.decodeName(.target)
        zone = try c.decodeName(.zone)
        point = try c.decodeNameIfPresent(.point)
        technique = try c.decodeName(.technique)
        intensity = try c.decodeInt(.intensity, in: ProtocolLimits.intensity)
        remainingSeconds = try c.decodeNumberIfPresent(.remainingSeconds, in: ProtocolLimits.sessionSeconds)
    }
}

/// `{root}/{site}/{device}/telemetry` (agent → console, QoS 0, not retained),
/// every `interval_s` seconds.
public struct Telemetry: AgentMessage {
    public static let topicKind = DeviceTopicKind.telemetry

    public var sessionState: SessionPhase
    public var sessionID: String?
    /// The running program's id (`_custom` for custom steps).
    public var program: String?
    public var step: CurrentStep?
    /// Seconds since the session started (pauses excluded).
    public var elapsedSeconds: Double?
    /// Measured pressure per active zone, in mmHg (empty when idle).
    public var pressureMMHg: [String: Double]
    public var motorTempC: Double
    /// The breathing cue shown, in breaths per minute.
    public var breathingBPM: Int?
    /// Active fault kinds (empty when healthy).
    public var faults: [String]
    /// Latched fault kinds that read healthy again and wait for someone to
    /// acknowledge them (`clear_fault`); absent when none.
    public var acknowledgeable: [String]?
    /// The pain lockout in force, if any.
    public var lockout: Lockout?
    /// Seconds until the next telemetry: the console calls a device stale
    /// after 3× this without telemetry.
    public var intervalSeconds: Double

    /// After a `pain_signal` abort: remote and scheduled starts are refused
    /// until it ends; a person at the device may start.
    public struct Lockout: Codable, Sendable, Equatable {
        /// Why (`pain_signal`).
        public var reason: String
        /// Where it hurt: the zone, and the point if the step worked one.
        public var zone: String
        public var point: String?
        public var remainingSeconds: Double

        enum CodingKeys: String, CodingKey {
            case reason, zone, point
            case remainingSeconds = "remaining_s"
        }

        public init(reason: String, zone: String, point: String?, remainingSeconds: Double) {
            self.reason = reason
            self.zone = zone
            self.point = point
            self.remainingSeconds = remainingSeconds
        }

        /// Reads a lockout; `remaining_s` is bounded like the other durations.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            reason = try c.decodeName(.reason)
            zone = try c.decodeName(.zone)
            point = try c.decodeNameIfPresent(.point)
            remainingSeconds = try c.decodeNumber(.remainingSeconds, in: ProtocolLimits.sessionSeconds)
        }
    }

    enum CodingKeys: String, CodingKey {
        case sessionState = "session_state"
        case sessionID = "session_id"
        case program, step
        case elapsedSeconds = "elapsed_s"
        case pressureMMHg = "pressure_mmhg"
        case motorTempC = "motor_temp_c"
        case breathingBPM = "breathing_bpm"
        case faults, acknowledgeable, lockout
        case intervalSeconds = "interval_s"
    }

    public init(sessionState: SessionPhase, sessionID: String? = nil, program: String? = nil, step: CurrentStep? = nil,
                elapsedSeconds: Double? = nil, pressureMMHg: [String: Double] = [:], motorTempC: Double,
                breathingBPM: Int? = nil, faults: [String] = [], acknowledgeable: [String]? = nil, lockout: Lockout? = nil,
                intervalSeconds: Double)
    {
        self.acknowledgeable = acknowledgeable
        self.lockout = lockout
        self.sessionState = sessionState
        self.sessionID = sessionID
        self.program = program
        self.step = step
        self.elapsedSeconds = elapsedSeconds
        self.pressureMMHg = pressureMMHg
        self.motorTempC = motorTempC
        self.breathingBPM = breathingBPM
        self.faults = faults
        self.intervalSeconds = intervalSeconds
    }

    /// Reads telemetry; every number is bounded (docs/protocol.md, "Limits").
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        sessionState = try c.decode(SessionPhase.self, forKey: .sessionState)
        sessionID = try c.decodeNameIfPresent(.sessionID)
        program = try c.decodeNameIfPresent(.program)
        step = try c.decodeIfPresent(CurrentStep.self, forKey: .step)
        elapsedSeconds = try c.decodeNumberIfPresent(.elapsedSeconds, in: ProtocolLimits.sessionSeconds)
        pressureMMHg = try c.decodeNumbers(.pressureMMHg, in: ProtocolLimits.pressureMMHg)
        motorTempC = try c.decodeNumber(.motorTempC, in: ProtocolLimits.motorTemperatureC)
        breathingBPM = try c.decodeIntIfPresent(.breathingBPM, in: ProtocolLimits.breathingBPM)
        faults = try c.decodeNames(.faults)
        acknowledgeable = try c.decodeNamesIfPresent(.acknowledgeable)
        lockout = try c.decodeIfPresent(Lockout.self, forKey: .lockout)
        intervalSeconds = try c.decodeNumber(.intervalSeconds, in: ProtocolLimits.telemetryIntervalSeconds)
    }
}

// MARK: events

/// `{root}/{site}/{device}/events` (agent → console, QoS 1, not retained).
/// One flat object: `type` plus the fields that type uses (see docs/protocol.md).
public struct Event: AgentMessage {
    public static let topicKind = DeviceTopicKind.events
    /// `program` of a session run from custom `steps` (cannot clash with a program id).
    public static let customProgram = "_custom"

    public var type: EventType
    // Session events.
    public var sessionID: String?
    public var program: String?
    /// `session_aborted` only.
    public var reason: SessionAbortReason?
    /// Who caused it: `remote` (a command), `device` (the person at the device), `schedule`, `agent`.
    public var source: String?
    /// The command that caused it, when one did.
    public var commandID: String?
    /// Session intensity (`session_started`; 1–10), or the new one after an adjustment.
    public var intensity: Int?
    /// Seconds the session ran (`session_completed`, `session_aborted`).
    public var elapsedSeconds: Double?
    // Steps (`session_step`).
    public var stepIndex: Int?
    public var stepCount: Int?
    public var target: String?
    public var zone: String?
    public var point: String?
    public var technique: String?
    public var durationSeconds: Int?
    // Schedules (`session_scheduled`, `session_missed`, `session_started` from a schedule).
    public var scheduleID: String?
    public var at: Date?
    /// Why a scheduled session did not start (`session_missed`): the error
    /// a `start_session` would have got (`busy`, `unsafe`, `expired`, …).
    public var error: ProtocolError?
    // Faults.
    public var fault: String?
    public var message: String?
    // Config (`config_applied`, `config_rejected`, `config_rolled_back`).
    public var configVersion: UInt64?
    public var reasons: [String]?

    /// The event's keys and the envelope's (never encoded by the body).
    enum CodingKeys: String, EnvelopeCodingKey {
        case ts, epoch, seq, historical
        case type
        case sessionID = "session_id"
        case program, reason, source
        case commandID = "command_id"
        case intensity
        case elapsedSeconds = "elapsed_s"
        case stepIndex = "step_index"
        case stepCount = "step_count"
        case target, zone, point, technique
        case durationSeconds = "duration_s"
        case scheduleID = "schedule_id"
        case at, error, fault, message
        case configVersion = "config_version"
        case reasons
    }

    public init(type: EventType, sessionID: String? = nil, program: String? = nil, reason: SessionAbortReason? = nil,
                source: String? = nil, commandID: String? = nil, intensity: Int? = nil,
                elapsedSeconds: Double? = nil, stepIndex: Int? = nil, stepCount: Int? = nil, target: String? = nil,
                zone: String? = nil, point: String? = nil, technique: String? = nil, durationSeconds: Int? = nil,
                scheduleID: String? = nil, at: Date? = nil, error: ProtocolError? = nil, fault: String? = nil,
                message: String? = nil, configVersion: UInt64? = nil, reasons: [String]? = nil)
    {
        self.type = type
        self.sessionID = sessionID
        self.program = program
        self.reason = reason
        self.source = source
        self.commandID = commandID
        self.intensity = intensity
        self.elapsedSeconds = elapsedSeconds
        self.stepIndex = stepIndex
        self.stepCount = stepCount
        self.target = target
        self.zone = zone
        self.point = point
        self.technique = technique
        self.durationSeconds = durationSeconds
        self.scheduleID = scheduleID
        self.at = at.map(RFC3339.normalized)
        self.error = error
        self.fault = fault
        self.message = message
        self.configVersion = configVersion
        self.reasons = reasons
    }

    public static func decodeWithEnvelope(from decoder: any Decoder) throws -> (Event, Envelope) {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        return (try Event(from: c), try Envelope(from: c))
    }

    public init(from decoder: any Decoder) throws {
        try self.init(from: decoder.container(keyedBy: CodingKeys.self))
    }

    init(from c: KeyedDecodingContainer<CodingKeys>) throws {
        type = try c.decode(EventType.self, forKey: .type)
        sessionID = try c.decodeNameIfPresent(.sessionID)
        program = try c.decodeNameIfPresent(.program)
        reason = try c.decodeIfPresent(SessionAbortReason.self, forKey: .reason)
        source = try c.decodeNameIfPresent(.source)
        commandID = try c.decodeNameIfPresent(.commandID)
        intensity = try c.decodeIntIfPresent(.intensity, in: ProtocolLimits.intensity)
        elapsedSeconds = try c.decodeNumberIfPresent(.elapsedSeconds, in: ProtocolLimits.sessionSeconds)
        stepIndex = try c.decodeIntIfPresent(.stepIndex, in: ProtocolLimits.stepIndex)
        stepCount = try c.decodeIntIfPresent(.stepCount, in: ProtocolLimits.stepCount)
        target = try c.decodeNameIfPresent(.target)
        zone = try c.decodeNameIfPresent(.zone)
        point = try c.decodeNameIfPresent(.point)
        technique = try c.decodeNameIfPresent(.technique)
        durationSeconds = try c.decodeIntIfPresent(.durationSeconds, in: 0...Int(ProtocolLimits.sessionSeconds.upperBound))
        scheduleID = try c.decodeNameIfPresent(.scheduleID)
        at = try c.decodeRFC3339IfPresent(forKey: .at)
        error = try c.decodeIfPresent(ProtocolError.self, forKey: .error)
        fault = try c.decodeNameIfPresent(.fault)
        message = try c.decodeTextIfPresent(.message)
        configVersion = try c.decodeCountIfPresent(.configVersion)
        reasons = try c.decodeTextsIfPresent(.reasons)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(type, forKey: .type)
        try c.encodeIfPresent(sessionID, forKey: .sessionID)
        try c.encodeIfPresent(program, forKey: .program)
        try c.encodeIfPresent(reason, forKey: .reason)
        try c.encodeIfPresent(source, forKey: .source)
        try c.encodeIfPresent(commandID, forKey: .commandID)
        try c.encodeIfPresent(intensity, forKey: .intensity)
        try c.encodeIfPresent(elapsedSeconds, forKey: .elapsedSeconds)
        try c.encodeIfPresent(stepIndex, forKey: .stepIndex)
        try c.encodeIfPresent(stepCount, forKey: .stepCount)
        try c.encodeIfPresent(target, forKey: .target)
        try c.encodeIfPresent(zone, forKey: .zone)
        try c.encodeIfPresent(point, forKey: .point)
        try c.encodeIfPresent(technique, forKey: .technique)
        try c.encodeIfPresent(durationSeconds, forKey: .durationSeconds)
        try c.encodeIfPresent(scheduleID, forKey: .scheduleID)
        try c.encodeRFC3339IfPresent(at, forKey: .at)
        try c.encodeIfPresent(error, forKey: .error)
        try c.encodeIfPresent(fault, forKey: .fault)
        try c.encodeIfPresent(message, forKey: .message)
        try c.encodeIfPresent(configVersion, forKey: .configVersion)
        try c.encodeIfPresent(reasons, forKey: .reasons)
    }
}

// MARK: usage

/// Session counts of `usage.sessions`.
public struct SessionCounts: Codable, Sendable, Equatable {
    public var started: UInt64
    public var completed: UInt64
    /// Aborted sessions by `SessionAbortReason` raw value (e.g. `pain_signal`).
    public var aborted: [String: UInt64]

    public init(started: UInt64 = 0, completed: UInt64 = 0, aborted: [String: UInt64] = [:]) {
        self.started = started
        self.completed = completed
        self.aborted = aborted
    }

    public var abortedTotal: UInt64 { aborted.values.reduce(0, &+) }

    enum CodingKeys: String, CodingKey { case started, completed, aborted }

    /// Reads the counts; each is an integer 0–2^53.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        started = try c.decodeCount(.started)
        completed = try c.decodeCount(.completed)
        aborted = try c.decodeCounts(.aborted)
    }
}

/// Massage seconds of `usage.seconds`, by zone, point, technique and program id.
public struct UsageSeconds: Codable, Sendable, Equatable {
    public var byZone: [String: UInt64]
    public var byPoint: [String: UInt64]
    public var byTechnique: [String: UInt64]
    public var byProgram: [String: UInt64]

    enum CodingKeys: String, CodingKey {
        case byZone = "by_zone"
        case byPoint = "by_point"
        case byTechnique = "by_technique"
        case byProgram = "by_program"
    }

    public init(byZone: [String: UInt64] = [:], byPoint: [String: UInt64] = [:],
                byTechnique: [String: UInt64] = [:], byProgram: [String: UInt64] = [:])
    {
        self.byZone = byZone
        self.byPoint = byPoint
        self.byTechnique = byTechnique
        self.byProgram = byProgram
    }

    /// Reads the seconds; each is an integer 0–2^53.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        byZone = try c.decodeCounts(.byZone)
        byPoint = try c.decodeCounts(.byPoint)
        byTechnique = try c.decodeCounts(.byTechnique)
        byProgram = try c.decodeCounts(.byProgram)
    }
}

/// `{root}/{site}/{device}/usage` (agent → console, QoS 1, retained):
/// cumulative counters since the device's ledger began. They never go down;
/// a drop means the ledger was lost and restarted (the console detects it,
/// it does not subtract).
public struct Usage: AgentMessage {
    public static let topicKind = DeviceTopicKind.usage

    public var sessions: SessionCounts
    public var seconds: UsageSeconds
    /// Outbox messages dropped (oldest first) because the outbox was full.
    public var outboxDropped: UInt64

    enum CodingKeys: String, CodingKey {
        case sessions, seconds
        case outboxDropped = "outbox_dropped"
    }

    public init(sessions: SessionCounts = .init(), seconds: UsageSeconds = .init(), outboxDropped: UInt64 = 0) {
        self.sessions = sessions
        self.seconds = seconds
        self.outboxDropped = outboxDropped
    }

    /// Reads usage; every counter is an integer 0–2^53.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        sessions = try c.decode(SessionCounts.self, forKey: .sessions)
        seconds = try c.decode(UsageSeconds.self, forKey: .seconds)
        outboxDropped = try c.decodeCount(.outboxDropped)
    }
}

// MARK: config/reported

/// `{root}/{site}/{device}/config/reported` (agent → console, QoS 1, retained).
public struct ReportedConfig: AgentMessage {
    public static let topicKind = DeviceTopicKind.configReported

    /// The desired version this report is about.
    public var version: UInt64
    public var state: ConfigApplyState
    /// The version the device runs now (differs from `version` unless `applied`).
    public var appliedVersion: UInt64?
    /// One-line summary of why (`rejected`, `rolled_back`).
    public var error: String?
    /// Every reason, each naming the key it is about.
    public var reasons: [String]?

    enum CodingKeys: String, CodingKey {
        case version, state
        case appliedVersion = "applied_version"
        case error, reasons
    }

    public init(version: UInt64, state: ConfigApplyState, appliedVersion: UInt64? = nil, error: String? = nil,
                reasons: [String]? = nil)
    {
        self.version = version
        self.state = state
        self.appliedVersion = appliedVersion
        self.error = error
        self.reasons = reasons
    }

    /// Reads a report; versions are integers 0–2^53.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decodeCount(.version)
        state = try c.decode(ConfigApplyState.self, forKey: .state)
        appliedVersion = try c.decodeCountIfPresent(.appliedVersion)
        error = try c.decodeTextIfPresent(.error)
        reasons = try c.decodeTextsIfPresent(.reasons)
    }
}

// MARK: _console/state

/// `{root}/_console/state` (console, QoS 1, retained; `offline` is its will).
public struct ConsoleState: Codable, Sendable, Equatable {
    public var state: PresenceState
    public var ts: Date?
    /// Which console instance (replicas each publish their own birth).
    public var instance: String?

    enum CodingKeys: String, CodingKey { case state, ts, instance }

    public init(state: PresenceState, ts: Date? = nil, instance: String? = nil) {
        self.state = state
        self.ts = ts.map(RFC3339.normalized)
        self.instance = instance
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        state = try c.decode(PresenceState.self, forKey: .state)
        ts = try c.decodeRFC3339IfPresent(forKey: .ts)
        instance = try c.decodeNameIfPresent(.instance)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(state, forKey: .state)
        try c.encodeRFC3339IfPresent(ts, forKey: .ts)
        try c.encodeIfPresent(instance, forKey: .instance)
    }
}

// MARK: decoding what arrives on a topic

/// Any agent message, decoded by the kind of topic it arrived on (what
/// the console's ingest calls for every message under the root).
public enum AgentPayload: Sendable, Equatable {
    case status(StatusMessage)
    case telemetry(TelemetryMessage)
    case event(EventMessage)
    case usage(UsageMessage)
    case reportedConfig(ReportedConfigMessage)

    public var envelope: Envelope {
        switch self {
        case .status(let m): m.envelope
        case .telemetry(let m): m.envelope
        case .event(let m): m.envelope
        case .usage(let m): m.envelope
        case .reportedConfig(let m): m.envelope
        }
    }

    /// Decodes `payload` received on a topic of `kind`. Never traps; any
    /// failure (empty payload of a cleared retained topic, size, not UTF-8,
    /// not JSON, wrong fields, a console topic) is a `bad_request` naming why.
    public static func decode<Bytes: Collection<UInt8>>(kind: DeviceTopicKind, payload: Bytes) -> Result<AgentPayload, ProtocolError> {
        if payload.isEmpty {
            return .failure(.badRequest("empty payload on \(kind) (a cleared retained message)"))
        }
        switch kind {
        case .status: return FleetJSON.decode(StatusMessage.self, from: payload).map(AgentPayload.status)
        case .telemetry: return FleetJSON.decode(TelemetryMessage.self, from: payload).map(AgentPayload.telemetry)
        case .events: return FleetJSON.decode(EventMessage.self, from: payload).map(AgentPayload.event)
        case .usage: return FleetJSON.decode(UsageMessage.self, from: payload).map(AgentPayload.usage)
        case .configReported:
            return FleetJSON.decode(ReportedConfigMessage.self, from: payload).map(AgentPayload.reportedConfig)
        case .cmd, .configDesired:
            return .failure(.badRequest("\(kind) is published by the console, not an agent"))
        }
    }
}
