import Foundation

extension EngineCore {
    // MARK: - Reports

    /// The ledger including the time of the session in progress.
    func usage() -> UsageCounters {
        var usage = committedUsage
        if var s = session {
            runner.fold(&s)
            usage.milliseconds.add(s.usage)
        }
        return usage
    }

    /// The ledger as storage holds it (with the running session's last
    /// checkpoint): what a restart would count from, so usage published from
    /// it never goes backwards after a crash.
    func durableUsage() -> UsageCounters {
        var usage = durableLedger
        if let marker = durableMarker { usage.milliseconds.add(marker.usage) }
        return usage
    }

    func telemetry() -> TelemetrySnapshot {
        let refused = refusal(origin: .remote)
        var snapshot = TelemetrySnapshot(
            state: .idle, pressuresMMHg: [:], motorTemperatureC: supervisor.motorTemperature,
            faults: supervisor.activeFaults, acknowledgeableFaults: supervisor.acknowledgeable,
            unsafeReason: refused?.reason, painLockout: painLockout, painLockoutRemainingSeconds: painLockoutRemaining,
            droppedEvents: droppedEvents, ticks: tickCount, lateTicks: lateTicks, worstLateMilliseconds: worstLateMilliseconds,
            persistenceFailures: persistenceFailures, lastPersistenceError: lastPersistenceError
        )
        let measured = supervisor.measured
        for zone in Zone.allCases where runner.ramped[zone] > 0 {
            snapshot.pressuresMMHg[zone.rawValue] = measured[zone]
        }
        guard let s = session else { return snapshot }
        let step = s.step
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
        snapshot.targetPressureMMHg = min(HardLimits.pressure(level: s.level, zone: step.zone), limits.ceiling(step.zone) * HardLimits.setpointShareOfCeiling)
        snapshot.stepRemainingSeconds = Double(s.stepTotalTicks - s.stepTicks) * dt
        snapshot.sessionElapsedSeconds = Double(s.elapsedTicks) * dt
        snapshot.pressuresMMHg[step.zone.rawValue] = measured[step.zone]
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

    /// `batch` is in storage now.
    mutating func noteDurable(_ batch: PersistenceBatch) {
        if let usage = batch.usage { durableLedger = usage }
        switch batch.activeSession {
        case .unchanged: break
        case .set(let marker): durableMarker = marker
        case .clear: durableMarker = nil
        }
    }
}
