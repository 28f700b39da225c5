import Foundation

/// How a session ends.
enum SessionOutcome: Equatable {
    case completed
    case aborted(AbortReason)
}

/// The session in progress.
struct ActiveSession {
    enum Phase: Equatable {
        case running
        case paused
        /// Soft stop: every zone ramps to zero, then the session ends with the outcome.
        case stopping(SessionOutcome)
    }

    let id: SessionID
    let program: Program
    let scheduleID: ScheduleID?
    let startedAt: Date
    /// Session-wide level (from the request or the latest adjustment).
    var sessionIntensity: Int?
    var stepIndex = 0
    var stepTicks = 0
    var stepTotalTicks: Int
    /// Level the current step runs at.
    var level: Int
    /// Ticks since the start, pauses and the soft stop included.
    var elapsedTicks = 0
    var phase = Phase.running
    /// Massage time folded so far.
    var usage = UsageTally()
    /// Ticks of the current step not yet folded into `usage`.
    var uncountedTicks = 0
    var ticksSinceCheckpoint = 0

    func remainingSeconds(dt: Double) -> Double {
        let rest = program.steps[(stepIndex + 1)...].reduce(0) { $0 + $1.durationSeconds }
        return Double(stepTotalTicks - stepTicks) * dt + Double(rest)
    }
}

extension EngineCore {
    // MARK: - Session lifecycle

    func stepTicks(_ step: ProgramStep) -> Int {
        Int(Int64(step.durationSeconds) * 1000 / tickMs)
    }

    /// The level a step runs at: the session intensity if there is one,
    /// clamped to what the step allows; a calibration step is never raised.
    func level(for step: ProgramStep, sessionIntensity: Int?) -> Int {
        guard let wanted = sessionIntensity else { return step.intensity }
        if step.isCalibration { return min(step.intensity, wanted) }
        return max(1, min(wanted, limits.maxLevel(step.technique, on: step.target)))
    }

    mutating func beginSession(program: Program, intensity: Int?, sessionID: SessionID, scheduleID: ScheduleID?) {
        let first = program.steps[0]
        let s = ActiveSession(
            id: sessionID, program: program, scheduleID: scheduleID, startedAt: clock.now(),
            sessionIntensity: intensity, stepTotalTicks: stepTicks(first),
            level: level(for: first, sessionIntensity: intensity)
        )
        session = s
        committedUsage.sessionsStarted += 1
        pending.merge(PersistenceBatch(
            usage: committedUsage,
            activeSession: .set(marker(for: s)),
            removeSchedules: scheduleID.map { [$0] } ?? []
        ))
        emitSession(.sessionStarted(scheduleID: scheduleID), s)
        emitSession(.sessionStep(index: 0, step: first, intensity: s.level), s)
    }

    func marker(for s: ActiveSession) -> ActiveSessionMarker {
        ActiveSessionMarker(sessionID: s.id, programID: s.program.id, scheduleID: s.scheduleID, startedAt: s.startedAt, usage: s.usage)
    }

    /// Moves the current step's uncounted ticks into the session's tally.
    func fold(_ s: inout ActiveSession) {
        guard s.uncountedTicks > 0 else { return }
        s.usage.add(milliseconds: Int64(s.uncountedTicks) * tickMs, step: s.program.steps[s.stepIndex], programID: s.program.id)
        s.uncountedTicks = 0
    }

    /// Ends the session: ledger, marker and event, in that order. Callers
    /// release the actuators first.
    mutating func finishSession(_ outcome: SessionOutcome) {
        guard var s = session else { return }
        session = nil
        fold(&s)
        committedUsage.milliseconds.add(s.usage)
        switch outcome {
        case .completed:
            committedUsage.sessionsCompleted += 1
        case .aborted(let reason):
            committedUsage.sessionsAborted[reason.rawValue, default: 0] += 1
        }
        pending.merge(PersistenceBatch(usage: committedUsage, activeSession: .clear))
        ramped = ZoneValues(repeating: 0)
        switch outcome {
        case .completed: emitSession(.sessionCompleted, s)
        case .aborted(let reason): emitSession(.sessionAborted(reason), s)
        }
    }

    /// Opens every valve and stops the motor, now.
    mutating func releaseNow() {
        hardware.releaseAll()
        ramped = ZoneValues(repeating: 0)
        lastCommand = .idle
    }

    // MARK: - The control tick

    mutating func tick() {
        tickCount &+= 1
        let reading = hardware.read(engineTime: engineTime)
        if let reason = supervise(reading) {
            // Release first, report after: the events go out only when this
            // tick's hardware actions are done.
            releaseNow()
            if session != nil { finishSession(.aborted(reason)) }
        }
        if !schedules.isEmpty { runDueSchedules() }
        if session != nil { advanceSession() }
    }

    mutating func advanceSession() {
        guard var s = session.take() else { return }  // moved out: no copy while it changes
        s.elapsedTicks += 1

        if s.elapsedTicks > maxSessionTicks, s.phase == .running || s.phase == .paused {
            fold(&s)
            s.phase = .stopping(.aborted(.timeLimit))
        }

        if s.phase == .running {
            s.stepTicks += 1
            s.uncountedTicks += 1
            s.ticksSinceCheckpoint += 1
            if s.stepTicks >= s.stepTotalTicks {
                fold(&s)
                if s.stepIndex + 1 < s.program.steps.count {
                    s.stepIndex += 1
                    s.stepTicks = 0
                    let step = s.program.steps[s.stepIndex]
                    s.stepTotalTicks = stepTicks(step)
                    s.level = level(for: step, sessionIntensity: s.sessionIntensity)
                    emitSession(.sessionStep(index: s.stepIndex, step: step, intensity: s.level), s)
                } else {
                    // The last step's own ramp has brought pressure to zero.
                    session = consume s
                    releaseNow()
                    finishSession(.completed)
                    return
                }
            }
            if s.ticksSinceCheckpoint >= checkpointTicks {
                s.ticksSinceCheckpoint = 0
                fold(&s)
                pending.merge(PersistenceBatch(activeSession: .set(marker(for: s))))
            }
        }

        // Goals: the current step's pressure in its zone while running, zero otherwise.
        let step = s.program.steps[s.stepIndex]
        var goalZone: Zone?
        var goal = 0.0
        if s.phase == .running {
            goalZone = step.zone
            goal = HardLimits.pressure(level: s.level, zone: step.zone)
            if s.stepIndex == s.program.steps.count - 1 {
                // Soft stop at the end of the program, inside the last step.
                let remaining = s.stepTotalTicks - s.stepTicks
                if remaining < softStopTicks { goal *= Double(remaining) / Double(softStopTicks) }
            }
        }

        var command = ActuatorCommand.idle
        var allZero = true
        for zone in Zone.allCases {
            let target = zone == goalZone ? goal : 0
            let current = ramped[zone]
            let next = target > current ? min(target, current + rampUpPerTick) : max(target, current - rampDownPerTick)
            ramped[zone] = next
            if next > 0 { allZero = false }
            command.pressuresMMHg[zone] = next
        }

        if case .stopping(let outcome) = s.phase, allZero {
            session = consume s
            releaseNow()
            finishSession(outcome)
            return
        }

        if let zone = goalZone {
            let pattern = step.technique.modulation(at: Double(s.stepTicks) * dt)
            command.pressuresMMHg[zone] = ramped[zone] * pattern
            command.technique = step.technique
            command.motorDuty = step.technique.motorLoad * ramped[zone] / HardLimits.ceiling(zone)
        }
        hardware.apply(command)
        lastCommand = command
        session = consume s  // a move, not a copy: the tick must not retain the program
    }

    // MARK: - Safety supervisor

    mutating func raise(_ fault: Fault) {
        guard faults[fault.key] == nil else { return }
        faults[fault.key] = fault
        emit(.faultRaised(fault), sessionID: session?.id, programID: session?.program.id)
    }

    mutating func clear(_ key: Fault.Key) {
        guard let fault = faults.removeValue(forKey: key) else { return }
        emit(.faultCleared(fault), sessionID: session?.id, programID: session?.program.id)
    }

    /// Checks one reading against every rule. Returns the reason to release
    /// now (and abort the session, if one runs), by priority: pain signal,
    /// hardware fault, sensor fault, overheat, overpressure.
    mutating func supervise(_ r: SensorReadings) -> AbortReason? {
        let first = !haveReadings
        haveReadings = true
        measuredPressures = r.pressuresMMHg
        motorTemperature = r.motorTemperatureC

        var pain = false, hardwareFault = false, sensorFault = false, overheat = false, overpressure = false

        // The person's stop button.
        stopButtonHeld = r.stopButtonPressed
        if r.stopButtonPressed { pain = true }

        // The hardware's own fault report.
        if let reported = r.hardwareFault {
            raise(Fault(kind: .hardwareFault, zone: reported.zone, detail: reported.detail))
            hardwareFault = true
        } else if !faults.isEmpty {
            for key in faults.keys where key.kind == .hardwareFault { clear(key) }
        }

        // Pressure sensors: fresh and plausible, then within the ceiling.
        for zone in Zone.allCases {
            let pressure = r.pressuresMMHg[zone]
            if !first, r.pressureSamples[zone] == pressureSamples[zone] {
                unchangedPressureSamples[zone] += 1
            } else {
                unchangedPressureSamples[zone] = 0
            }
            let stale = unchangedPressureSamples[zone] >= staleTicks
            let plausible = pressure.isFinite && HardLimits.plausiblePressureMMHg.contains(pressure)
            if stale || !plausible {
                healthyPressureTicks[zone] = 0
                overpressureTicks[zone] = 0
                let detail = stale
                    ? "\(zone.rawValue) pressure sensor gave no new sample for \(Int64(unchangedPressureSamples[zone]) * tickMs) ms"
                    : "\(zone.rawValue) pressure sensor reads \(pressure) mmHg, outside \(format(HardLimits.plausiblePressureMMHg.lowerBound))…\(format(HardLimits.plausiblePressureMMHg.upperBound))"
                raise(Fault(kind: .sensorFault, zone: zone, detail: detail))
                sensorFault = true
                continue
            }
            let sensorKey = Fault.Key(kind: .sensorFault, zone: zone)
            if faults[sensorKey] != nil {
                healthyPressureTicks[zone] += 1
                if healthyPressureTicks[zone] >= faultClearTicks { clear(sensorKey) }
            }

            let ceiling = limits.ceiling(zone)
            if pressure > ceiling + HardLimits.overpressureMarginMMHg {
                overpressureTicks[zone] += 1
                belowCeilingTicks[zone] = 0
                if overpressureTicks[zone] > HardLimits.overpressureToleratedTicks {
                    raise(Fault(kind: .overpressure, zone: zone, detail: "\(zone.rawValue) at \(format(pressure.rounded())) mmHg for \(overpressureTicks[zone]) ticks, over its ceiling of \(format(ceiling)) mmHg"))
                    overpressure = true
                }
            } else {
                overpressureTicks[zone] = 0
                let key = Fault.Key(kind: .overpressure, zone: zone)
                if faults[key] != nil, pressure <= ceiling {
                    belowCeilingTicks[zone] += 1
                    if belowCeilingTicks[zone] >= faultClearTicks { clear(key) }
                }
            }
        }

        // Motor temperature sensor, then the temperature itself.
        let temperature = r.motorTemperatureC
        if !first, r.temperatureSample == temperatureSample {
            unchangedTemperatureSamples += 1
        } else {
            unchangedTemperatureSamples = 0
        }
        pressureSamples = r.pressureSamples
        temperatureSample = r.temperatureSample
        let temperatureStale = unchangedTemperatureSamples >= staleTicks
        let temperaturePlausible = temperature.isFinite && HardLimits.plausibleTemperatureC.contains(temperature)
        let temperatureKey = Fault.Key(kind: .sensorFault, zone: nil)
        if temperatureStale || !temperaturePlausible {
            healthyTemperatureTicks = 0
            let detail = temperatureStale
                ? "motor temperature sensor gave no new sample for \(Int64(unchangedTemperatureSamples) * tickMs) ms"
                : "motor temperature sensor reads \(temperature) °C, outside \(format(HardLimits.plausibleTemperatureC.lowerBound))…\(format(HardLimits.plausibleTemperatureC.upperBound))"
            raise(Fault(kind: .sensorFault, zone: nil, detail: detail))
            sensorFault = true
        } else {
            if faults[temperatureKey] != nil {
                healthyTemperatureTicks += 1
                if healthyTemperatureTicks >= faultClearTicks { clear(temperatureKey) }
            }
            let overheatKey = Fault.Key(kind: .overheat, zone: nil)
            if temperature > limits.maxMotorTemperatureC {
                raise(Fault(kind: .overheat, zone: nil, detail: "motor at \(format(temperature.rounded())) °C, over its maximum of \(format(limits.maxMotorTemperatureC)) °C"))
                overheat = true
            } else if faults[overheatKey] != nil, temperature < limits.motorResumeTemperatureC {
                clear(overheatKey)
            }
        }

        if pain { return .painSignal }
        if hardwareFault { return .hardwareFault }
        if sensorFault { return .sensorFault }
        if overheat { return .overheat }
        if overpressure { return .overpressure }
        return nil
    }

    // MARK: - Scheduler

    /// Starts (or reports missed) every schedule whose time has come.
    mutating func runDueSchedules() {
        let now = clock.now()
        while let due = schedules.first, due.at <= now {
            schedules.removeFirst()
            let missed: MissedReason?
            var program: Program?
            if now.timeIntervalSince(due.at) > graceSeconds {
                missed = .late
            } else if session != nil || shuttingDown {
                missed = .busy
            } else if unsafeState() != nil {
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
