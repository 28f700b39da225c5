import Foundation

/// The engine's state and the control tick, a plain synchronous value.
/// `MassageEngine` keeps it behind a `Mutex` and calls one method at a time;
/// nothing here sleeps, awaits or touches storage.
///
/// It composes three pure parts and is the only one that touches the
/// hardware: `SafetySupervisor` (readings in, verdicts out; the final clamp),
/// `SessionRunner` (the session, ramps and levels) and `Scheduler` (booked
/// sessions). Commands are in `EngineCore+Commands.swift`, reports and the
/// persistence hand-off in `EngineCore+Reports.swift`.
struct EngineCore {
    // MARK: Dependencies and timing
    let hardware: any MassagerHardware
    let clock: any WallClock
    let monotonic: any MonotonicClock
    let configuration: EngineConfiguration
    var limits: EngineLimits { didSet { maxSessionTicks = Self.ticks(seconds: Double(limits.maxSessionSeconds), tickMs: tickMs) } }
    var library: ProgramLibrary

    let tickMs: Int64
    let dt: Double
    var maxSessionTicks: Int

    var tickCount: UInt64 = 0

    // MARK: The parts
    var supervisor: SafetySupervisor
    var runner: SessionRunner
    var scheduler: Scheduler
    var lastCommand = ActuatorCommand.idle

    // MARK: Lockout, control loop, shutdown
    var painLockout: PainLockout?
    /// Engine monotonic time at which the pain lockout ends.
    var painLockoutEnds = 0.0
    var shuttingDown = false
    var lateTicks = 0
    var worstLateMilliseconds = 0.0

    // MARK: Ledger and persistence
    var committedUsage = UsageCounters()
    /// The ledger and the running session's checkpoint as last written to
    /// storage: what the agent may publish as retained usage, so a restart
    /// never shows less than was published.
    var durableLedger = UsageCounters()
    var durableMarker: ActiveSessionMarker?
    var pending = PersistenceBatch()
    let persistsEvents: Bool
    var persistenceFailures = 0
    var lastPersistenceError: String?

    // MARK: Event outbox (delivered by MassageEngine after each operation)
    var outbox: [EngineEvent] = []
    var droppedEvents = 0

    init(hardware: any MassagerHardware, clock: any WallClock, monotonic: any MonotonicClock, configuration: EngineConfiguration,
         library: ProgramLibrary, persistsEvents: Bool) {
        self.hardware = hardware
        self.clock = clock
        self.monotonic = monotonic
        self.configuration = configuration
        self.limits = configuration.limits
        self.library = library
        self.persistsEvents = persistsEvents
        tickMs = configuration.controlTick.wholeMilliseconds
        dt = Double(tickMs) / 1000
        maxSessionTicks = Self.ticks(seconds: Double(configuration.limits.maxSessionSeconds), tickMs: tickMs)
        supervisor = SafetySupervisor(tickMilliseconds: tickMs)
        runner = SessionRunner(timing: .init(
            tickMs: tickMs, dt: dt,
            softStopTicks: Self.ticks(seconds: HardLimits.softStopSeconds, tickMs: tickMs),
            checkpointTicks: Self.ticks(seconds: configuration.usageCheckpointInterval.timeInterval, tickMs: tickMs),
            rampUpPerTick: HardLimits.rampUpMMHgPerSecond * dt,
            rampDownPerTick: HardLimits.rampDownMMHgPerSecond * dt))
        scheduler = Scheduler(capacity: configuration.maxSchedules, grace: configuration.scheduleGracePeriod.timeInterval)
        outbox.reserveCapacity(16)
    }

    /// Whole ticks in `seconds`, rounded up, at least one.
    static func ticks(seconds: Double, tickMs: Int64) -> Int {
        max(1, Int((seconds * 1000 / Double(tickMs)).rounded(.up)))
    }

    var engineTime: Double { Double(tickCount) * dt }
    var session: ActiveSession? { runner.session }

    // MARK: - Events

    mutating func emit(_ kind: EngineEvent.Kind, sessionID: SessionID?, programID: String?, stepCount: Int? = nil) {
        let event = EngineEvent(time: clock.now(), sessionID: sessionID, programID: programID, stepCount: stepCount, kind: kind)
        outbox.append(event)
        if persistsEvents {
            if pending.events.count >= configuration.eventBufferSize {
                pending.events.removeFirst()
                droppedEvents += 1
            }
            pending.events.append(event)
        }
    }

    mutating func emitSession(_ kind: EngineEvent.Kind, _ session: ActiveSession) {
        emit(kind, sessionID: session.id, programID: session.program.id, stepCount: session.program.steps.count)
    }

    // MARK: - The control tick

    /// One control tick: read, supervise (release first, report after),
    /// start due schedules, advance the session, clamp, command.
    mutating func tick() {
        tickCount &+= 1
        let reading = hardware.read(engineTime: engineTime)
        let verdict = supervisor.check(reading, commanded: lastCommand.pressuresMMHg, limits: limits)
        // Release first, report after: the events go out only when this
        // tick's hardware actions are done.
        if verdict.abort != nil {
            releaseNow()
        } else if verdict.releaseAgain {
            hardware.releaseAll()
        }
        for fault in verdict.raised { raised(fault) }
        for fault in verdict.cleared { emit(.faultCleared(fault), sessionID: session?.id, programID: session?.program.id) }
        if !verdict.raised.isEmpty { pending.merge(PersistenceBatch(latchedFaults: supervisor.latched)) }
        if let reason = verdict.abort, let running = session {
            if reason == .painSignal { startPainLockout(at: running.step) }
            finishSession(.aborted(reason))
        }
        if painLockout != nil, monotonic.monotonicSeconds() >= painLockoutEnds { endPainLockout() }
        if !scheduler.isEmpty { runDueSchedules() }
        if session != nil { advanceSession() }
    }

    mutating func raised(_ fault: Fault) {
        emit(.faultRaised(fault), sessionID: session?.id, programID: session?.program.id)
    }

    mutating func advanceSession() {
        let overTime: Bool
        if let s = session {
            overTime = s.elapsedTicks + 1 > maxSessionTicks
                || monotonic.monotonicSeconds() - s.startedMonotonic > Double(limits.maxSessionSeconds)
        } else {
            overTime = false
        }
        let result = runner.advance(limits: limits, overTime: overTime)
        if let outcome = result.finished {
            releaseNow()
            finishSession(outcome)
            return
        }
        if let s = session {
            if result.stepBegan { emitSession(.sessionStep(index: s.stepIndex, step: s.step, intensity: s.level), s) }
            if result.checkpoint { pending.merge(PersistenceBatch(activeSession: .set(marker(for: s)))) }
        }
        if let command = result.command { sendToHardware(command) }
    }

    /// The only way a command reaches the hardware: through the final clamp.
    mutating func sendToHardware(_ command: ActuatorCommand) {
        let safe = SafetySupervisor.clamp(command, limits: limits)
        hardware.apply(safe)
        lastCommand = safe
    }

    /// Opens every valve and stops the motor, now; the supervisor then
    /// checks that pressure falls.
    mutating func releaseNow() {
        hardware.releaseAll()
        runner.dropRamps()
        lastCommand = .idle
        supervisor.released()
    }

    // MARK: - The watched control loop

    /// The driver found the control loop late by `milliseconds`. More than
    /// `HardLimits.controlOverrunTicks` ticks while pressure is on or a
    /// session runs: release everything, abort `control_overrun`, latch.
    /// At rest it is only counted (nothing to protect).
    mutating func controlLoopLate(milliseconds: Double) {
        lateTicks += 1
        worstLateMilliseconds = max(worstLateMilliseconds, milliseconds)
        guard milliseconds > Double(HardLimits.controlOverrunTicks) * Double(tickMs) else { return }
        guard session != nil || runner.hasPressure || lastCommand != .idle else { return }
        releaseNow()
        let fault = Fault(kind: .controlOverrun, zone: nil, detail: "the control loop ran \(format(milliseconds.rounded())) ms late (more than \(HardLimits.controlOverrunTicks) ticks of \(tickMs) ms)")
        if supervisor.raise(fault) {
            raised(fault)
            pending.merge(PersistenceBatch(latchedFaults: supervisor.latched))
        }
        if session != nil { finishSession(.aborted(.controlOverrun)) }
    }

    // MARK: - Pain lockout

    mutating func startPainLockout(at step: ProgramStep?) {
        let seconds = Double(limits.painLockoutSeconds)
        painLockoutEnds = monotonic.monotonicSeconds() + seconds
        let lockout = PainLockout(until: clock.now().addingTimeInterval(seconds), zone: step?.zone ?? .thigh, point: step?.point, sessionID: session?.id)
        painLockout = lockout
        pending.merge(PersistenceBatch(painLockout: .set(lockout)))
    }

    mutating func endPainLockout() {
        painLockout = nil
        pending.merge(PersistenceBatch(painLockout: .clear))
    }

    var painLockoutRemaining: Double? {
        painLockout.map { _ in max(0, painLockoutEnds - monotonic.monotonicSeconds()) }
    }

    // MARK: - Session lifecycle

    mutating func beginSession(program: Program, intensity: Int?, sessionID: SessionID, scheduleID: ScheduleID?) {
        let s = runner.begin(program: program, intensity: intensity, id: sessionID, scheduleID: scheduleID, at: clock.now(),
                             monotonic: monotonic.monotonicSeconds(), limits: limits)
        supervisor.sessionStarted()
        committedUsage.sessionsStarted += 1
        pending.merge(PersistenceBatch(
            usage: committedUsage,
            activeSession: .set(marker(for: s)),
            removeSchedules: scheduleID.map { [$0] } ?? []
        ))
        emitSession(.sessionStarted(scheduleID: scheduleID), s)
        emitSession(.sessionStep(index: 0, step: s.step, intensity: s.level), s)
    }

    func marker(for s: ActiveSession) -> ActiveSessionMarker {
        var s = s
        runner.fold(&s)
        return ActiveSessionMarker(sessionID: s.id, programID: s.program.id, scheduleID: s.scheduleID, startedAt: s.startedAt, usage: s.usage)
    }

    /// Ends the session: ledger, marker and event in one pending batch.
    /// Callers release the actuators first.
    mutating func finishSession(_ outcome: SessionOutcome) {
        guard let s = runner.end() else { return }
        committedUsage.milliseconds.add(s.usage)
        switch outcome {
        case .completed:
            committedUsage.sessionsCompleted += 1
        case .aborted(let reason):
            committedUsage.sessionsAborted[reason.rawValue, default: 0] += 1
        }
        pending.merge(PersistenceBatch(usage: committedUsage, activeSession: .clear))
        switch outcome {
        case .completed: emitSession(.sessionCompleted, s)
        case .aborted(let reason): emitSession(.sessionAborted(reason), s)
        }
    }

    // MARK: - Scheduler

    /// Starts (or reports missed) every schedule whose time has come.
    mutating func runDueSchedules() {
        let now = clock.now()
        while let due = scheduler.takeDue(now: now) {
            let missed: MissedReason?
            var program: Program?
            if scheduler.isLate(due, now: now) {
                missed = .late
            } else if session != nil || shuttingDown {
                missed = .busy
            } else if refusal(origin: .remote) != nil {
                missed = .unsafe
            } else if let valid = try? ProgramValidator.validate(due.program, limits: limits) {
                missed = nil
                program = valid
            } else {
                missed = .invalid
            }
            if let program {
                beginSession(program: program, intensity: due.intensity, sessionID: due.sessionID, scheduleID: due.id)
            } else {
                pending.merge(PersistenceBatch(removeSchedules: [due.id]))
                emit(.sessionMissed(scheduleID: due.id, at: due.at, why: missed ?? .invalid), sessionID: due.sessionID, programID: due.program.id)
            }
        }
    }
}

/// RFC 3339, UTC, for messages.
func rfc3339(_ date: Date) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    return formatter.string(from: date)
}
