import Foundation

/// What acknowledging the latched faults did.
public struct FaultAcknowledgement: Sendable, Equatable {
    /// The faults cleared by this acknowledgement.
    public var cleared: [Fault]
    /// The faults still active (not yet healthy, or overheat cooling down).
    public var stillActive: [Fault]
}

extension EngineCore {
    // MARK: - Restore (startup)

    /// Takes over persisted state: an active-session marker means the
    /// process died mid-session, so that session is counted once as aborted
    /// `interrupted` (never resumed); every schedule whose time came while
    /// the device was off is reported missed (never started at boot);
    /// latched faults stay latched and a pain lockout keeps running.
    mutating func restore(_ persisted: PersistedState) {
        committedUsage = persisted.usage
        for reason in AbortReason.allCases where committedUsage.sessionsAborted[reason.rawValue] == nil {
            committedUsage.sessionsAborted[reason.rawValue] = 0
        }
        durableLedger = committedUsage
        durableMarker = persisted.activeSession
        if let marker = persisted.activeSession {
            committedUsage.milliseconds.add(marker.usage)
            committedUsage.sessionsAborted[AbortReason.interrupted.rawValue, default: 0] += 1
            pending.merge(PersistenceBatch(usage: committedUsage, activeSession: .clear))
            emit(.sessionAborted(.interrupted), sessionID: marker.sessionID, programID: marker.programID)
        }
        let now = clock.now()
        for missed in scheduler.restore(persisted.schedules, now: now) {
            pending.merge(PersistenceBatch(removeSchedules: [missed.id]))
            emit(.sessionMissed(scheduleID: missed.id, at: missed.at, why: .late), sessionID: missed.sessionID, programID: missed.program.id)
        }
        supervisor.restore(latched: persisted.latchedFaults)
        if let lockout = persisted.painLockout {
            let remaining = min(lockout.until.timeIntervalSince(now), Double(HardLimits.maxPainLockoutSeconds))
            if remaining > 0 {
                painLockout = lockout
                painLockoutEnds = monotonic.monotonicSeconds() + remaining
            } else {
                pending.merge(PersistenceBatch(painLockout: .clear))
            }
        }
    }

    // MARK: - Refusals

    /// Resolves and validates a request against the limits in force.
    func resolve(_ request: SessionRequest) throws(EngineError) -> Program {
        let spec: ProgramSpec
        switch request.source {
        case .program(let id):
            spec = try library.program(id).spec
        case .steps(let steps):
            spec = ProgramSpec(id: SessionRequest.customProgramID, name: "Custom session", steps: steps)
        }
        if let intensity = request.intensity, !HardLimits.intensityLevels.contains(intensity) {
            throw EngineError(.invalidParams, "intensity \(intensity) is outside \(HardLimits.intensityLevels.lowerBound)–\(HardLimits.intensityLevels.upperBound)")
        }
        do {
            return try ProgramValidator.validate(spec, limits: limits)
        } catch {
            throw EngineError(.invalidParams, error.description, issues: error.issues)
        }
    }

    /// Why a new session from `origin` would be refused now, with a message
    /// a person can act on.
    func refusal(origin: SessionRequest.Origin) -> (reason: EngineError.UnsafeReason, message: String)? {
        let temperature = supervisor.motorTemperature
        if supervisor.haveReadings, temperature > limits.maxMotorTemperatureC {
            return (.overTemperature, "the motor is at \(format(temperature.rounded())) °C, above its maximum of \(format(limits.maxMotorTemperatureC)) °C; sessions resume once it cools below \(format(limits.motorResumeTemperatureC)) °C")
        }
        if supervisor.faults[Fault.Key(kind: .overheat, zone: nil)] != nil {
            return (.cooldown, "the motor is cooling down after an overheat (\(format(temperature.rounded())) °C); sessions resume below \(format(limits.motorResumeTemperatureC)) °C")
        }
        if let fault = supervisor.activeFaults.first {
            let healthy = supervisor.acknowledgeable.contains(fault)
            let next = healthy
                ? "it reads healthy now: acknowledge it at the device or with clear_fault to start again"
                : "it stays latched until the hardware reads healthy and someone acknowledges it (at the device or with clear_fault)"
            return (.fault, "a fault is active: \(fault); \(next)")
        }
        if supervisor.stopButtonHeld {
            return (.fault, "the stop button is held; release it to start a session")
        }
        if origin == .remote, let lockout = painLockout, let left = painLockoutRemaining {
            let place = lockout.point.map { "\($0.rawValue.uppercased()) (\(lockout.zone.rawValue))" } ?? "the \(lockout.zone.rawValue)"
            return (.painLockout, "a pain signal stopped the last session at \(place); remote and scheduled starts are refused for \(Int(left.rounded(.up))) s more (a person at the device may start one)")
        }
        return nil
    }

    // MARK: - Commands

    mutating func start(_ request: SessionRequest) throws(EngineError) -> SessionID {
        let program = try resolve(request)
        if shuttingDown { throw EngineError(.busy, "the engine is shutting down") }
        if let running = session {
            throw EngineError(.busy, "session \(running.id) (\(running.program.id)) is running; stop it before starting another")
        }
        if let unsafe = refusal(origin: request.origin) { throw EngineError(.unsafe, unsafe.message, unsafeReason: unsafe.reason) }
        let now = clock.now()
        let end = now.addingTimeInterval(TimeInterval(program.totalSeconds))
        if let clash = scheduler.first(before: end) {
            throw EngineError(.busy, "the slot is taken: schedule \(clash.id) (\(clash.program.id)) starts at \(rfc3339(clash.at)), before this \(program.totalSeconds) s session would end; cancel it or start later")
        }
        let id = SessionID.make()
        beginSession(program: program, intensity: request.intensity, sessionID: id, scheduleID: nil)
        return id
    }

    mutating func schedule(_ request: SessionRequest, at: Date) throws(EngineError) -> ScheduledSession {
        let program = try resolve(request)
        let now = clock.now()
        if at < now {
            throw EngineError(.invalidParams, "schedule time \(rfc3339(at)) is in the past (now \(rfc3339(now))); give a future time")
        }
        if shuttingDown { throw EngineError(.busy, "the engine is shutting down") }
        if scheduler.isFull {
            throw EngineError(.busy, "the schedule is full (\(configuration.maxSchedules) sessions); cancel one first")
        }
        let end = at.addingTimeInterval(TimeInterval(program.totalSeconds))
        if let running = session {
            let runningEnd = now.addingTimeInterval(running.remainingSeconds(dt: dt) + HardLimits.maxSoftStopSeconds)
            if at < runningEnd {
                throw EngineError(.busy, "session \(running.id) (\(running.program.id)) runs until about \(rfc3339(runningEnd)); schedule after that")
            }
        }
        if let clash = scheduler.clash(from: at, to: end) {
            throw EngineError(.busy, "the slot is taken: schedule \(clash.id) (\(clash.program.id)) runs \(rfc3339(clash.at))–\(rfc3339(clash.end)); pick a time outside it")
        }
        // A booking is refused only for what will still hold at its time: a
        // fault or a held button. A pain lockout that ends before it does not.
        if let unsafe = refusal(origin: .local) { throw EngineError(.unsafe, unsafe.message, unsafeReason: unsafe.reason) }
        if let left = painLockoutRemaining, now.addingTimeInterval(left) > at, let unsafe = refusal(origin: .remote) {
            throw EngineError(.unsafe, unsafe.message, unsafeReason: unsafe.reason)
        }
        let entry = ScheduledSession(id: .make(), sessionID: .make(), at: at, program: program.spec, intensity: request.intensity)
        scheduler.book(entry)
        pending.merge(PersistenceBatch(upsertSchedules: [entry]))
        emit(.sessionScheduled(scheduleID: entry.id, at: at), sessionID: entry.sessionID, programID: program.id)
        return entry
    }

    mutating func cancelScheduled(_ id: ScheduleID) throws(EngineError) {
        try scheduler.cancel(id)
        pending.merge(PersistenceBatch(removeSchedules: [id]))
    }

    mutating func stop(reason: AbortReason) throws(EngineError) {
        try runner.stop(.aborted(reason))
    }

    mutating func pause() throws(EngineError) {
        if try runner.pause(), let s = session { emitSession(.sessionPaused, s) }
    }

    mutating func resume() throws(EngineError) {
        if try runner.resume(), let s = session { emitSession(.sessionResumed, s) }
    }

    mutating func adjustIntensity(_ level: Int) throws(EngineError) {
        try runner.adjust(level, limits: limits)
    }

    /// Clears every latched fault whose condition reads healthy (someone
    /// looked: the person at the device, or an operator with `clear_fault`).
    mutating func acknowledgeFaults() throws(EngineError) -> FaultAcknowledgement {
        let active = supervisor.activeFaults
        if active.isEmpty { throw EngineError(.notFound, "no fault is active") }
        let (cleared, stillActive) = supervisor.acknowledge()
        if cleared.isEmpty {
            let list = stillActive.map(\.description).joined(separator: "; ")
            throw EngineError(.unsafe, "no fault reads healthy yet, so none was cleared: \(list); a latched fault can be acknowledged once its condition has read healthy for \(format(HardLimits.faultClearSeconds)) s", unsafeReason: .fault)
        }
        for fault in cleared { emit(.faultCleared(fault), sessionID: nil, programID: nil) }
        pending.merge(PersistenceBatch(latchedFaults: supervisor.latched))
        return FaultAcknowledgement(cleared: cleared, stillActive: stillActive)
    }

    /// Ends any session at once (actuators released first) and refuses new ones.
    mutating func shutdown() {
        shuttingDown = true
        if session != nil {
            releaseNow()
            finishSession(.aborted(.shutdown))
        }
    }

    mutating func replace(limits newLimits: EngineLimits) throws(EngineError) {
        if let running = session {
            throw EngineError(.busy, "session \(running.id) is running; limits change only between sessions")
        }
        limits = newLimits
    }
}
