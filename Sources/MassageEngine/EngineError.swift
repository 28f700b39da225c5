/// The error a command to the engine (start, schedule, stop, …) fails with.
/// `code` is the stable wire code (DESIGN.md §3); `message` says what was
/// wrong and what to do about it.
public struct EngineError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A stable error code. A struct over raw strings so that codes can be
    /// added without breaking exhaustive switches.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// Unknown program, step out of limits, bad time, bad intensity.
        public static let invalidParams = Code(rawValue: "invalid_params")
        /// A session is running, the slot is taken, or the engine is shutting down.
        public static let busy = Code(rawValue: "busy")
        /// The device is not safe to start: a fault, over-temperature, cooldown.
        public static let unsafe = Code(rawValue: "unsafe")
        /// No such schedule, or no session to stop/pause/resume/adjust.
        public static let notFound = Code(rawValue: "not_found")

        public var description: String { rawValue }
    }

    /// Why the device is unsafe (`unsafe` errors only).
    public enum UnsafeReason: String, Sendable, Codable, Equatable {
        /// A fault is active (sensor, hardware, overpressure) or the stop button is held.
        case fault
        /// The motor is above its maximum temperature.
        case overTemperature = "over_temperature"
        /// The motor overheated and has not yet cooled below the resume threshold.
        case cooldown
        /// A pain signal ended a session recently: remote and scheduled starts
        /// wait out the lockout (a person at the device may start).
        case painLockout = "pain_lockout"
    }

    public let code: Code
    public let message: String
    public let unsafeReason: UnsafeReason?
    /// For a refused program: every validation reason.
    public let issues: [ValidationIssue]

    public init(_ code: Code, _ message: String, unsafeReason: UnsafeReason? = nil, issues: [ValidationIssue] = []) {
        self.code = code
        self.message = message
        self.unsafeReason = unsafeReason
        self.issues = issues
    }

    public var description: String { "\(code): \(message)" }
}
