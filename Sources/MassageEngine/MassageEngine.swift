import Foundation
import Synchronization

/// The device engine: programs, sessions, the safety supervisor, the
/// scheduler and the usage ledger, driven by `tick()`.
///
/// It is a synchronous state machine behind a `Mutex`: `tick()` advances it
/// by one control tick (`configuration.controlTick` of engine time), and
/// commands (`start`, `stop`, `pause`, …) may be called from any task at
/// any time; each call runs to completion under the lock, so a command
/// lands between two ticks. Tests call `tick()` directly; a device runs
/// the agent's `EngineDriver` (MassageAgent), which calls it in real time
/// (or N× faster) on a thread of its own.
///
/// Events go out on `events` (one consumer). Persistence is handed off:
/// see `EngineStorage` and `flushPersistence()`.
public final class MassageEngine: Sendable {
    /// Session and fault events, in the order they happened. Bounded: holds
    /// at most `configuration.eventBufferSize` undelivered events and drops
    /// the oldest beyond that (counted in `telemetry().droppedEvents`). One
    /// consumer only (AsyncStream).
    public let events: AsyncStream<EngineEvent>
    public let configuration: EngineConfiguration

    private let continuation: AsyncStream<EngineEvent>.Continuation
    private let core: Mutex<EngineCore>
    /// Serialises flushes so batches reach storage in the order they were taken.
    private let flushLock = Mutex<Int>(0)
    private let storage: any EngineStorage
    private let observer: (@Sendable (EngineEvent) -> Void)?

    /// Creates the engine and takes over what `storage` holds: a session
    /// that was running when the process died is counted once as aborted
    /// `interrupted` (and never resumed); schedules whose time passed more
    /// than the grace period ago are reported `session_missed`. Those
    /// changes are persisted before `init` returns.
    ///
    /// - Parameters:
    ///   - programs: the programs the device can run (see `ProgramLibrary.load`).
    ///   - hardware: the massager; `SimulatedMassager()` where there is no real one.
    ///   - clock: wall time for schedules and event timestamps.
    ///   - monotonicClock: engine time for the session limit and the pain
    ///     lockout (default: the wall clock if it is also monotonic, as
    ///     MassageEngineTesting's `ManualClock` is, else `CLOCK_MONOTONIC`).
    ///   - storage: where usage, schedules and the active-session marker
    ///     persist (the agent's SQLite `AgentEngineStorage`; tests use
    ///     MassageEngineTesting's `InMemoryEngineStorage`). No default: a host
    ///     that forgot it would lose its ledger on every restart.
    ///   - eventObserver: called synchronously with every event, in order,
    ///     after the hardware actions of the same tick or command, while the
    ///     engine is locked. It must return quickly and must not call the
    ///     engine (that would deadlock). For tests and synchronous logging;
    ///     the agent reads `events`.
    public init(
        programs: ProgramLibrary,
        configuration: EngineConfiguration = EngineConfiguration(),
        hardware: any MassagerHardware = SimulatedMassager(),
        clock: any WallClock = SystemWallClock(),
        monotonicClock: (any MonotonicClock)? = nil,
        storage: any EngineStorage,
        eventObserver: (@Sendable (EngineEvent) -> Void)? = nil
    ) throws {
        let problems = configuration.problems
        if !problems.isEmpty {
            throw EngineError(.invalidParams, "invalid engine configuration: " + problems.joined(separator: "; "))
        }
        self.configuration = configuration
        self.storage = storage
        self.observer = eventObserver
        (events, continuation) = AsyncStream.makeStream(of: EngineEvent.self, bufferingPolicy: .bufferingNewest(configuration.eventBufferSize))

        // A manual wall clock is the monotonic clock too, so tests stay on one clock.
        let monotonic = monotonicClock ?? (clock as? any MonotonicClock) ?? SystemMonotonicClock()
        var state = EngineCore(hardware: hardware, clock: clock, monotonic: monotonic, configuration: configuration, library: programs,
                               persistsEvents: storage.persistsEvents)
        state.restore(try storage.load())
        core = Mutex(state)
        core.withLock { deliver(&$0) }
        try flushPersistence()
    }

    deinit {
        continuation.finish()
    }

    private func deliver(_ core: inout EngineCore) {
        guard !core.outbox.isEmpty else { return }
        for event in core.outbox {
            if case .dropped = continuation.yield(event) { core.droppedEvents += 1 }
            observer?(event)
        }
        core.outbox.removeAll(keepingCapacity: true)
    }

    private func withCore<R: Sendable>(_ body: (inout EngineCore) -> R) -> R {
        core.withLock { (state: inout EngineCore) -> R in
            defer { deliver(&state) }
            return body(&state)
        }
    }

    private func withCoreThrowing<R: Sendable>(_ body: (inout EngineCore) throws(EngineError) -> R) throws(EngineError) -> R {
        try core.withLock { (state: inout EngineCore) throws(EngineError) -> R in
            defer { deliver(&state) }
            return try body(&state)
        }
    }

    // MARK: - The control tick

    /// The length of one control tick in engine time.
    public var controlTick: Duration { configuration.controlTick }

    /// Advances the engine by one control tick: read the sensors, run the
    /// safety supervisor (releasing before reporting), start due schedules,
    /// advance the session and command the actuators. Never blocks on
    /// storage or the event consumer.
    public func tick() {
        core.withLock { state in
            state.tick()
            if !state.outbox.isEmpty { deliver(&state) }
        }
    }

    /// Runs `count` ticks (a test convenience; also what a speed factor does).
    public func tick(count: Int) {
        for _ in 0..<max(0, count) { tick() }
    }

    // MARK: - Commands

    /// Starts a session now. Errors: `invalid_params` (unknown program, a
    /// step out of limits, bad intensity), `busy` (a session runs, or a
    /// schedule takes the slot), `unsafe` (fault, over-temperature, cooldown).
    @discardableResult
    public func start(_ request: SessionRequest) throws(EngineError) -> SessionID {
        try withCoreThrowing { (state: inout EngineCore) throws(EngineError) in try state.start(request) }
    }

    /// Books a session at a wall-clock time. Errors as `start`, plus
    /// `invalid_params` for a time in the past and `busy` for an overlap
    /// with the running session or another schedule.
    @discardableResult
    public func schedule(_ request: SessionRequest, at date: Date) throws(EngineError) -> ScheduledSession {
        try withCoreThrowing { (state: inout EngineCore) throws(EngineError) in try state.schedule(request, at: date) }
    }

    /// Cancels a schedule. Error: `not_found`.
    public func cancelScheduled(_ id: ScheduleID) throws(EngineError) {
        try withCoreThrowing { (state: inout EngineCore) throws(EngineError) in try state.cancelScheduled(id) }
    }

    /// Soft stop (every zone to zero within `HardLimits.maxSoftStopSeconds`),
    /// then `session_aborted(reason)`. Error: `not_found` when no session runs.
    public func stop(reason: AbortReason = .remoteStop) throws(EngineError) {
        try withCoreThrowing { (state: inout EngineCore) throws(EngineError) in try state.stop(reason: reason) }
    }

    /// Releases pressure (soft) and freezes the step clock. Error: `not_found`.
    public func pause() throws(EngineError) {
        try withCoreThrowing { (state: inout EngineCore) throws(EngineError) in try state.pause() }
    }

    /// Ramps back up and continues the step. Error: `not_found`.
    public func resume() throws(EngineError) {
        try withCoreThrowing { (state: inout EngineCore) throws(EngineError) in try state.resume() }
    }

    /// Sets the level for the current step and the rest of the session
    /// (each later step clamped to what it allows). Errors: `not_found`,
    /// `invalid_params` (outside 1–10 or over what the current step allows).
    public func adjustIntensity(_ level: Int) throws(EngineError) {
        try withCoreThrowing { (state: inout EngineCore) throws(EngineError) in try state.adjustIntensity(level) }
    }

    /// Releases every actuator at once, ends any session as aborted
    /// `shutdown`, and refuses new sessions. Call on SIGTERM; the agent's
    /// `EngineDriver` does when it is cancelled.
    public func shutdown() {
        withCore { (state: inout EngineCore) in state.shutdown() }
    }

    /// Acknowledges the latched faults (someone looked at the device): clears
    /// every one whose condition has read healthy for
    /// `HardLimits.faultClearSeconds`. Errors: `not_found` when no fault is
    /// active, `unsafe` when none reads healthy yet (nothing is cleared).
    @discardableResult
    public func acknowledgeFaults() throws(EngineError) -> FaultAcknowledgement {
        try withCoreThrowing { (state: inout EngineCore) throws(EngineError) in try state.acknowledgeFaults() }
    }

    /// The driver found the control loop `milliseconds` late. Past
    /// `HardLimits.controlOverrunTicks` ticks with pressure on or a session
    /// running: every actuator released, the session aborted
    /// `control_overrun`, a latched fault raised.
    public func controlLoopLate(milliseconds: Double) {
        withCore { (state: inout EngineCore) in state.controlLoopLate(milliseconds: milliseconds) }
    }

    /// Replaces the programs (configuration rollouts).
    public func replacePrograms(_ library: ProgramLibrary) {
        withCore { (state: inout EngineCore) in state.library = library }
    }

    /// Replaces the limits. Error: `busy` while a session runs (limits change between sessions).
    public func replaceLimits(_ limits: EngineLimits) throws(EngineError) {
        try withCoreThrowing { (state: inout EngineCore) throws(EngineError) in try state.replace(limits: limits) }
    }

    // MARK: - Reports

    public func telemetry() -> TelemetrySnapshot {
        withCore { (state: inout EngineCore) in state.telemetry() }
    }

    /// The usage ledger, including the session in progress.
    public func usage() -> UsageCounters {
        withCore { (state: inout EngineCore) in state.usage() }
    }

    /// The usage ledger as storage holds it, with the running session's last
    /// checkpoint: what to publish as retained usage (a restart never counts
    /// less than this, so published usage never goes backwards).
    public func durableUsage() -> UsageCounters {
        withCore { (state: inout EngineCore) in state.durableUsage() }
    }

    public func schedules() -> [ScheduledSession] {
        withCore { (state: inout EngineCore) in state.scheduler.entries }
    }

    public var programs: ProgramLibrary {
        withCore { (state: inout EngineCore) in state.library }
    }

    public var limits: EngineLimits {
        withCore { (state: inout EngineCore) in state.limits }
    }

    /// The faults active now.
    public var faults: [Fault] {
        withCore { (state: inout EngineCore) in state.supervisor.activeFaults }
    }

    /// Control ticks run so far.
    public var tickCount: UInt64 {
        withCore { (state: inout EngineCore) in state.tickCount }
    }

    // MARK: - Persistence hand-off

    /// True when changes wait to be persisted.
    public var hasPendingPersistence: Bool {
        withCore { (state: inout EngineCore) in !state.pending.isEmpty }
    }

    /// Hands the pending changes to storage. Runs outside the engine lock:
    /// ticks and commands go on while storage writes. On failure the changes
    /// stay pending (merged with newer ones) and the error is rethrown; the
    /// next flush retries. Flushes are serialised, so batches reach storage
    /// in order. Call it from the persistence loop (the agent's `EngineDriver` does), and
    /// after a command whose result must be durable before replying.
    public func flushPersistence() throws {
        try flushLock.withLock { flushes in
            let batch = core.withLock { $0.takePending() }
            guard !batch.isEmpty else { return }
            do {
                try storage.apply(batch)
                flushes += 1
                core.withLock { $0.noteDurable(batch) }
            } catch {
                core.withLock { $0.requeue(batch, error: error) }
                throw error
            }
        }
    }
}
