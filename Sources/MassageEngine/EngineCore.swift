import Foundation

/// The engine's state and logic, a plain synchronous value. `MassageEngine`
/// keeps it behind a `Mutex` and calls one method at a time; nothing here
/// sleeps, awaits or touches storage.
struct EngineCore {
    // MARK: Dependencies and timing
    let hardware: any MassagerHardware
    let clock: any WallClock
    let configuration: EngineConfiguration
    var limits: EngineLimits { didSet { maxSessionTicks = Self.ticks(seconds: Double(limits.maxSessionSeconds), tickMs: tickMs) } }
    var library: ProgramLibrary

    let tickMs: Int64
    let dt: Double
    let staleTicks: Int
    let faultClearTicks: Int
    let softStopTicks: Int
    let checkpointTicks: Int
    let graceSeconds: TimeInterval
    let rampUpPerTick: Double
    let rampDownPerTick: Double
    var maxSessionTicks: Int

    var tickCount: UInt64 = 0

    // MARK: Hardware and supervisor state
    /// The last reading, kept as plain values (cheap to copy on every tick).
    var measuredPressures = ZoneValues<Double>(repeating: 0)
    var pressureSamples = ZoneValues<UInt32>(repeating: 0)
    var motorTemperature = 0.0
    var temperatureSample: UInt32 = 0
    var haveReadings = false
    /// Pressure envelope per zone: where the ramps are, before the technique's pattern.
    var ramped = ZoneValues<Double>(repeating: 0)
    var lastCommand = ActuatorCommand.idle
    var unchangedPressureSamples = ZoneValues<Int>(repeating: 0)
    var healthyPressureTicks = ZoneValues<Int>(repeating: 0)
    var unchangedTemperatureSamples = 0
    var healthyTemperatureTicks = 0
    var overpressureTicks = ZoneValues<Int>(repeating: 0)
    var belowCeilingTicks = ZoneValues<Int>(repeating: 0)
    var faults: [Fault.Key: Fault] = [:]
    var stopButtonHeld = false

    // MARK: Session, schedules, ledger
    var session: ActiveSession?
    var shuttingDown = false
    var schedules: [ScheduledSession] = []
    var committedUsage = UsageCounters()
    var pending = PersistenceBatch()
    var persistenceFailures = 0
    var lastPersistenceError: String?

    // MARK: Event outbox (delivered by MassageEngine after each operation)
    var outbox: [EngineEvent] = []
    var droppedEvents = 0

    init(hardware: any MassagerHardware, clock: any WallClock, configuration: EngineConfiguration, library: ProgramLibrary) {
        self.hardware = hardware
        self.clock = clock
        self.configuration = configuration
        self.limits = configuration.limits
        self.library = library
        tickMs = configuration.controlTick.wholeMilliseconds
        dt = Double(tickMs) / 1000
        staleTicks = Self.ticks(seconds: HardLimits.sensorStaleSeconds, tickMs: tickMs)
        faultClearTicks = Self.ticks(seconds: HardLimits.faultClearSeconds, tickMs: tickMs)
        softStopTicks = Self.ticks(seconds: HardLimits.softStopSeconds, tickMs: tickMs)
        checkpointTicks = Self.ticks(seconds: configuration.usageCheckpointInterval.timeInterval, tickMs: tickMs)
        graceSeconds = configuration.scheduleGracePeriod.timeInterval
        rampUpPerTick = HardLimits.rampUpMMHgPerSecond * dt
        rampDownPerTick = HardLimits.rampDownMMHgPerSecond * dt
        maxSessionTicks = Self.ticks(seconds: Double(configuration.limits.maxSessionSeconds), tickMs: tickMs)
        outbox.reserveCapacity(16)
    }

    /// Whole ticks in `seconds`, rounded up, at least one.
    static func ticks(seconds: Double, tickMs: Int64) -> Int {
        max(1, Int((seconds * 1000 / Double(tickMs)).rounded(.up)))
    }

    var engineTime: Double { Double(tickCount) * dt }

    // MARK: - Events

    mutating func emit(_ kind: EngineEvent.Kind, sessionID: SessionID?, programID: String?, stepCount: Int? = nil) {
        outbox.append(EngineEvent(time: clock.now(), sessionID: sessionID, programID: programID, stepCount: stepCount, kind: kind))
    }

    mutating func emitSession(_ kind: EngineEvent.Kind, _ session: ActiveSession) {
        emit(kind, sessionID: session.id, programID: session.program.id, stepCount: session.program.steps.count)
    }

    // MARK: - Restore (startup)

    /// Takes over persisted state: an active-session marker means the
    /// process died mid-session, so that session is counted once as aborted
    /// `interrupted` (never resumed); schedules whose time passed beyond the
    /// grace period are reported missed.
    mutating func restore(_ persisted: PersistedState) {
        committedUsage = persisted.usage
        for reason in AbortReason.allCases where committedUsage.sessionsAborted[reason.rawValue] == nil {
            committedUsage.sessionsAborted[reason.rawValue] = 0
        }
        if let marker = persisted.activeSession {
            committedUsage.milliseconds.add(marker.usage)
            committedUsage.sessionsAborted[AbortReason.interrupted.rawValue, default: 0] += 1
            pending.merge(PersistenceBatch(usage: committedUsage, activeSession: .clear))
            emit(.sessionAborted(.interrupted), sessionID: marker.sessionID, programID: marker.programID)
        }
        schedules = persisted.schedules.sorted { $0.at < $1.at }
        let now = clock.now()
        while let first = schedules.first, now.timeIntervalSince(first.at) > graceSeconds {
            schedules.removeFirst()
            pending.merge(PersistenceBatch(removeSchedules: [first.id]))
            emit(.sessionMissed(scheduleID: first.id, at: first.at, why: .late), sessionID: first.sessionID, programID: first.program.id)
        }
    }

    // MARK: - Commands

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

    /// Why a new session would be refused now, with a message a person can act on.
    func unsafeState() -> (reason: EngineError.UnsafeReason, message: String)? {
        let temperature = motorTemperature
        if haveReadings, temperature > limits.maxMotorTemperatureC {
            return (.overTemperature, "the motor is at \(format(temperature.rounded())) °C, above its maximum of \(format(limits.maxMotorTemperatureC)) °C; sessions resume once it cools below \(format(limits.motorResumeTemperatureC)) °C")
        }
        if faults[Fault.Key(kind: .overheat, zone: nil)] != nil {
            return (.cooldown, "the motor is cooling down after an overheat (\(format(temperature.rounded())) °C); sessions resume below \(format(limits.motorResumeTemperatureC)) °C")
        }
        if let fault = faults.values.sorted(by: { $0.description < $1.description }).first {
            return (.fault, "a fault is active: \(fault); sessions resume once it clears")
        }
        if stopButtonHeld {
            return (.fault, "the stop button is held; release it to start a session")
        }
        return nil
    }

    mutating func start(_ request: SessionRequest) throws(EngineError) -> SessionID {
        let program = try resolve(request)
        if shuttingDown { throw EngineError(.busy, "the engine is shutting down") }
        if let running = session {
            throw EngineError(.busy, "session \(running.id) (\(running.program.id)) is running; stop it before starting another")
        }
        if let unsafe = unsafeState() { throw EngineError(.unsafe, unsafe.message, unsafeReason: unsafe.reason) }
        let now = clock.now()
        let end = now.addingTimeInterval(TimeInterval(program.totalSeconds))
        if let clash = schedules.first(where: { $0.at < end }) {
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
        if schedules.count >= configuration.maxSchedules {
            throw EngineError(.busy, "the schedule is full (\(configuration.maxSchedules) sessions); cancel one first")
        }
        let end = at.addingTimeInterval(TimeInterval(program.totalSeconds))
        if let running = session {
            let runningEnd = now.addingTimeInterval(running.remainingSeconds(dt: dt) + HardLimits.maxSoftStopSeconds)
            if at < runningEnd {
                throw EngineError(.busy, "session \(running.id) (\(running.program.id)) runs until about \(rfc3339(runningEnd)); schedule after that")
            }
        }
        if let clash = schedules.first(where: { $0.at < end && at < $0.end }) {
            throw EngineError(.busy, "the slot is taken: schedule \(clash.id) (\(clash.program.id)) runs \(rfc3339(clash.at))–\(rfc3339(clash.end)); pick a time outside it")
        }
        if let unsafe = unsafeState() { throw EngineError(.unsafe, unsafe.message, unsafeReason: unsafe.reason) }
        let entry = ScheduledSession(id: .make(), sessionID: .make(), at: at, program: program.spec, intensity: request.intensity)
        let index = schedules.firstIndex(where: { $0.at > at }) ?? schedules.endIndex
        schedules.insert(entry, at: index)
        pending.merge(PersistenceBatch(upsertSchedules: [entry]))
        emit(.sessionScheduled(scheduleID: entry.id, at: at), sessionID: entry.sessionID, programID: program.id)
        return entry
    }

    mutating func cancelScheduled(_ id: ScheduleID) throws(EngineError) {
        guard let index = schedules.firstIndex(where: { $0.id == id }) else {
            let known = schedules.isEmpty ? "there are no schedules" : "scheduled: " + schedules.map(\.id.rawValue).joined(separator: ", ")
            throw EngineError(.notFound, "no schedule \"\(id)\"; \(known)")
        }
        schedules.remove(at: index)
        pending.merge(PersistenceBatch(removeSchedules: [id]))
    }

    mutating func stop(reason: AbortReason) throws(EngineError) {
        guard var s = session else { throw EngineError(.notFound, "no session is running") }
        if case .stopping = s.phase { return }
        fold(&s)
        s.phase = .stopping(.aborted(reason))
        session = s
    }

    mutating func pause() throws(EngineError) {
        guard var s = session else { throw EngineError(.notFound, "no session is running") }
        switch s.phase {
        case .paused: return
        case .stopping: throw EngineError(.busy, "session \(s.id) is stopping")
        case .running:
            fold(&s)
            s.phase = .paused
            session = s
            emitSession(.sessionPaused, s)
        }
    }

    mutating func resume() throws(EngineError) {
        guard var s = session else { throw EngineError(.notFound, "no session is running") }
        switch s.phase {
        case .running: return
        case .stopping: throw EngineError(.busy, "session \(s.id) is stopping")
        case .paused:
            s.phase = .running
            session = s
            emitSession(.sessionResumed, s)
        }
    }

    mutating func adjustIntensity(_ level: Int) throws(EngineError) {
        guard var s = session else { throw EngineError(.notFound, "no session is running") }
        guard HardLimits.intensityLevels.contains(level) else {
            throw EngineError(.invalidParams, "intensity \(level) is outside \(HardLimits.intensityLevels.lowerBound)–\(HardLimits.intensityLevels.upperBound)")
        }
        if case .stopping = s.phase { throw EngineError(.busy, "session \(s.id) is stopping") }
        let step = s.program.steps[s.stepIndex]
        let allowed = limits.maxLevel(step.technique, on: step.target)
        if level > allowed {
            let rule = Suitability.of(step.technique, on: step.target)
            let why: String
            if rule.maxIntensity < limits.maxLevel(on: step.zone), let reason = rule.reason {
                why = "\(step.technique.rawValue) on the \(step.target.id) is limited to level \(allowed): \(reason)"
            } else {
                why = "level \(level) would be \(format(HardLimits.pressure(level: level, zone: step.zone))) mmHg, over the \(step.zone.rawValue) ceiling of \(format(limits.ceiling(step.zone))) mmHg; the highest level here is \(allowed)"
            }
            throw EngineError(.invalidParams, why)
        }
        s.sessionIntensity = level
        s.level = level
        session = s
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

    // MARK: - Reports

    /// The ledger including the time of the session in progress.
    func usage() -> UsageCounters {
        var usage = committedUsage
        if var s = session {
            fold(&s)
            usage.milliseconds.add(s.usage)
        }
        return usage
    }

    func telemetry() -> TelemetrySnapshot {
        var snapshot = TelemetrySnapshot(
            state: .idle, pressuresMMHg: [:], motorTemperatureC: motorTemperature,
            faults: faults.values.sorted { $0.description < $1.description },
            unsafeReason: unsafeState()?.reason, droppedEvents: droppedEvents, ticks: tickCount,
            persistenceFailures: persistenceFailures, lastPersistenceError: lastPersistenceError
        )
        for zone in Zone.allCases where ramped[zone] > 0 {
            snapshot.pressuresMMHg[zone.rawValue] = measuredPressures[zone]
        }
        guard let s = session else { return snapshot }
        let step = s.program.steps[s.stepIndex]
        switch s.phase {
        case .running: snapshot.state = .running
        case .paused: snapshot.state = .paused
        case .stopping: snapshot.state = .stopping
        }
        snapshot.sessionID = s.id
        snapshot.programID = s.program.id
        snapshot.stepIndex = s.stepIndex
        snapshot.stepCount = s.program.steps.count
        snapshot.step = step
        snapshot.intensity = s.level
        snapshot.targetPressureMMHg = HardLimits.pressure(level: s.level, zone: step.zone)
        snapshot.stepRemainingSeconds = Double(s.stepTotalTicks - s.stepTicks) * dt
        snapshot.sessionElapsedSeconds = Double(s.elapsedTicks) * dt
        snapshot.pressuresMMHg[step.zone.rawValue] = measuredPressures[step.zone]
        snapshot.breathingBPM = step.breathingBPM
        return snapshot
    }

    // MARK: - Persistence hand-off

    mutating func takePending() -> PersistenceBatch {
        let batch = pending
        pending = PersistenceBatch()
        return batch
    }

    mutating func requeue(_ batch: PersistenceBatch, error: any Error) {
        var merged = batch
        merged.merge(pending)
        pending = merged
        persistenceFailures += 1
        lastPersistenceError = "\(error)"
    }
}

/// RFC 3339, UTC, for messages.
func rfc3339(_ date: Date) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    return formatter.string(from: date)
}
