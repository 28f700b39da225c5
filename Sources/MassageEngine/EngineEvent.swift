import Foundation

/// Identifies a session; assigned when it is started or scheduled.
public struct SessionID: RawRepresentable, Hashable, Codable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    static func make() -> SessionID { SessionID(rawValue: "s-" + UUID().uuidString.lowercased()) }
    public var description: String { rawValue }
}

/// Identifies a schedule entry; what `cancel_scheduled` takes.
public struct ScheduleID: RawRepresentable, Hashable, Codable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    static func make() -> ScheduleID { ScheduleID(rawValue: "sch-" + UUID().uuidString.lowercased()) }
    public var description: String { rawValue }
}

/// Why a session ended early. Raw values are the wire names.
public enum AbortReason: String, CaseIterable, Codable, Sendable, CustomStringConvertible {
    case painSignal = "pain_signal"
    case overpressure
    case overheat
    case sensorFault = "sensor_fault"
    case hardwareFault = "hardware_fault"
    case timeLimit = "time_limit"
    case remoteStop = "remote_stop"
    case shutdown
    case interrupted
    /// The control loop fell more than `HardLimits.controlOverrunTicks` behind.
    case controlOverrun = "control_overrun"

    public var description: String { rawValue }
}

/// Why a scheduled session did not run (`session_missed`).
public enum MissedReason: String, Codable, Sendable, CustomStringConvertible {
    /// Its time passed (beyond the grace period) while the device was off.
    case late
    /// Another session was still running at its time.
    case busy
    /// The device was unsafe at its time (fault, over-temperature, cooldown).
    case unsafe
    /// Its program no longer validates against the limits in force.
    case invalid

    public var description: String { rawValue }
}

/// A condition the safety supervisor found. While any fault is active, new
/// sessions are refused (`unsafe`). Every kind but `overheat` latches: it
/// stays active until its condition has read healthy for
/// `HardLimits.faultClearSeconds` and someone acknowledges it (at the
/// device, or an operator through `clear_fault`). `overheat` clears by
/// itself once the motor has cooled below its resume temperature.
public struct Fault: Hashable, Sendable, Codable, CustomStringConvertible {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        case overpressure
        case overheat
        case sensorFault = "sensor_fault"
        case hardwareFault = "hardware_fault"
        /// Measured pressure does not follow the command (runaway pump, a
        /// valve that does not open, a frozen sensor, a leak).
        case pressureTracking = "pressure_tracking"
        /// Pressure did not fall after a release: critical; the engine
        /// releases again on every tick while it lasts.
        case releaseFailed = "release_failed"
        /// The control loop ran too late to be trusted.
        case controlOverrun = "control_overrun"

        /// Latches until healthy and acknowledged.
        public var latches: Bool { self != .overheat }
        /// Pressure may still be on the person.
        public var isCritical: Bool { self == .releaseFailed }
    }

    public var kind: Kind
    /// The zone whose sensor or actuator is at fault; nil for the motor and
    /// its temperature sensor.
    public var zone: Zone?
    /// What was seen, for a person: "calf pressure sensor stale for 0.12 s".
    public var detail: String

    public init(kind: Kind, zone: Zone?, detail: String) {
        self.kind = kind
        self.zone = zone
        self.detail = detail
    }

    /// Identity of the fault: one active fault per kind and zone.
    public struct Key: Hashable, Sendable {
        public var kind: Kind
        public var zone: Zone?
    }

    public var key: Key { Key(kind: kind, zone: zone) }

    public var description: String {
        "\(kind.rawValue)\(zone.map { "(\($0.rawValue))" } ?? ""): \(detail)"
    }
}

/// Something that happened, for the agent to publish on the events topic.
/// Session events carry the session id and program id.
public struct EngineEvent: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case sessionScheduled(scheduleID: ScheduleID, at: Date)
        case sessionStarted(scheduleID: ScheduleID?)
        /// A step began; `intensity` is the level it runs at (after any
        /// session-wide intensity).
        case sessionStep(index: Int, step: ProgramStep, intensity: Int)
        case sessionPaused
        case sessionResumed
        case sessionCompleted
        case sessionAborted(AbortReason)
        case sessionMissed(scheduleID: ScheduleID, at: Date, why: MissedReason)
        case faultRaised(Fault)
        case faultCleared(Fault)
    }

    /// Wall-clock time (from the injected `WallClock`).
    public var time: Date
    public var sessionID: SessionID?
    public var programID: String?
    /// Steps in the session's program (session events only).
    public var stepCount: Int?
    public var kind: Kind

    public init(time: Date, sessionID: SessionID?, programID: String?, stepCount: Int? = nil, kind: Kind) {
        self.time = time
        self.sessionID = sessionID
        self.programID = programID
        self.stepCount = stepCount
        self.kind = kind
    }

    /// The wire `type`.
    public var type: String {
        switch kind {
        case .sessionScheduled: "session_scheduled"
        case .sessionStarted: "session_started"
        case .sessionStep: "session_step"
        case .sessionPaused: "session_paused"
        case .sessionResumed: "session_resumed"
        case .sessionCompleted: "session_completed"
        case .sessionAborted: "session_aborted"
        case .sessionMissed: "session_missed"
        case .faultRaised: "fault_raised"
        case .faultCleared: "fault_cleared"
        }
    }

    /// The abort reason of a `session_aborted` event.
    public var abortReason: AbortReason? {
        if case .sessionAborted(let reason) = kind { return reason }
        return nil
    }

    public var description: String {
        var text = type
        switch kind {
        case .sessionAborted(let reason): text += "(\(reason.rawValue))"
        case .sessionStep(let index, let step, let level): text += "(\(index): \(step.technique.rawValue) on \(step.target.id) at \(level))"
        case .sessionMissed(_, _, let why): text += "(\(why.rawValue))"
        case .faultRaised(let fault), .faultCleared(let fault): text += "(\(fault))"
        default: break
        }
        if let sessionID { text += " session=\(sessionID)" }
        if let programID { text += " program=\(programID)" }
        return text
    }
}
