/// The engine's state on request: what the agent publishes as telemetry.
public struct TelemetrySnapshot: Sendable, Equatable {
    public enum SessionState: String, Sendable, Codable {
        case idle, running, paused, stopping
    }

    public var state: SessionState
    public var sessionID: SessionID?
    public var programID: String?
    public var stepIndex: Int?
    public var stepCount: Int?
    /// The current step: target (zone or point), technique, written intensity.
    public var step: ProgramStep?
    /// The level the current step runs at (after session intensity and adjustments).
    public var intensity: Int?
    /// Target pressure of the current step at that level (mmHg).
    public var targetPressureMMHg: Double?
    public var stepRemainingSeconds: Double?
    /// Time since the session started, pauses included.
    public var sessionElapsedSeconds: Double?
    /// Measured pressure of each active zone (the current step's zone and any
    /// zone still ramping down), by zone id (mmHg).
    public var pressuresMMHg: [String: Double]
    public var motorTemperatureC: Double
    public var breathingBPM: Int?
    /// Every fault in force, the critical first.
    public var faults: [Fault]
    /// Latched faults whose condition reads healthy: an acknowledgement
    /// (`clear_fault`, or at the device) clears them.
    public var acknowledgeableFaults: [Fault]
    /// Why a new remote session would be refused right now, if it would.
    public var unsafeReason: EngineError.UnsafeReason?
    /// The pain lockout in force, and how long it still runs.
    public var painLockout: PainLockout?
    public var painLockoutRemainingSeconds: Double?
    /// Events dropped because the consumer of `events` fell behind.
    public var droppedEvents: Int
    /// Control ticks run since the engine was created.
    public var ticks: UInt64
    /// Times the driver found the control loop late, and the worst lateness.
    public var lateTicks: Int
    public var worstLateMilliseconds: Double
    /// Failed attempts to persist (they are retried); the last error, if any.
    public var persistenceFailures: Int
    public var lastPersistenceError: String?
}
