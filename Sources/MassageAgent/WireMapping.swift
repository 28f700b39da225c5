import FleetProtocol
import Foundation
import MassageEngine

/// Engine values in their wire form (docs/protocol.md).
enum WireMapping {
    static func programID(_ engineID: String?) -> String? {
        guard let engineID else { return nil }
        return engineID == SessionRequest.customProgramID ? Event.customProgram : engineID
    }

    static func event(_ e: EngineEvent) -> Event {
        let session = e.sessionID?.rawValue
        let program = programID(e.programID)
        switch e.kind {
        case .sessionScheduled(let scheduleID, let at):
            return Event(type: .sessionScheduled, sessionID: session, program: program, scheduleID: scheduleID.rawValue, at: at)
        case .sessionStarted(let scheduleID):
            return Event(type: .sessionStarted, sessionID: session, program: program, source: scheduleID == nil ? "command" : "schedule", scheduleID: scheduleID?.rawValue)
        case .sessionStep(let index, let step, let intensity):
            return Event(type: .sessionStep, sessionID: session, program: program, intensity: intensity, stepIndex: index, stepCount: e.stepCount,
                         target: step.target.id, zone: step.zone.rawValue, point: step.point?.rawValue,
                         technique: step.technique.rawValue, durationSeconds: step.durationSeconds)
        case .sessionPaused:
            return Event(type: .sessionPaused, sessionID: session, program: program)
        case .sessionResumed:
            return Event(type: .sessionResumed, sessionID: session, program: program)
        case .sessionCompleted:
            return Event(type: .sessionCompleted, sessionID: session, program: program)
        case .sessionAborted(let reason):
            return Event(type: .sessionAborted, sessionID: session, program: program, reason: SessionAbortReason(rawValue: reason.rawValue))
        case .sessionMissed(let scheduleID, let at, let why):
            let code: ErrorCode
            switch why {
            case .busy: code = .busy
            case .unsafe: code = .unsafe
            case .invalid: code = .invalidParams
            default: code = .expired
            }
            return Event(type: .sessionMissed, sessionID: session, program: program, scheduleID: scheduleID.rawValue, at: at,
                         error: ProtocolError(code: code, message: "scheduled session missed: \(why.rawValue)"))
        case .faultRaised(let fault):
            return Event(type: .faultRaised, fault: fault.kind.rawValue, message: fault.description)
        case .faultCleared(let fault):
            return Event(type: .faultCleared, fault: fault.kind.rawValue, message: fault.description)
        }
    }

    static func usage(_ u: UsageCounters, outboxDropped: Int) -> Usage {
        func seconds(_ ms: [String: Int64]) -> [String: UInt64] {
            ms.mapValues { UInt64(max(0, $0) / 1000) }
        }
        var byProgram = seconds(u.milliseconds.byProgram)
        if let custom = byProgram.removeValue(forKey: SessionRequest.customProgramID) { byProgram[Event.customProgram] = custom }
        return Usage(
            sessions: SessionCounts(started: UInt64(u.sessionsStarted), completed: UInt64(u.sessionsCompleted),
                                    aborted: u.sessionsAborted.mapValues { UInt64(max(0, $0)) }),
            seconds: UsageSeconds(byZone: seconds(u.milliseconds.byZone), byPoint: seconds(u.milliseconds.byPoint),
                                  byTechnique: seconds(u.milliseconds.byTechnique), byProgram: byProgram),
            outboxDropped: UInt64(outboxDropped))
    }

    static func telemetry(_ t: TelemetrySnapshot, interval: Double) -> Telemetry {
        let phase: SessionPhase
        switch t.state {
        case .idle:
            switch t.unsafeReason {
            case nil: phase = .idle
            case .painLockout: phase = .lockedOut
            case .cooldown, .overTemperature: phase = .cooldown
            default: phase = t.faults.isEmpty ? .cooldown : .fault
            }
        case .running: phase = .running
        case .paused: phase = .paused
        case .stopping: phase = .stopping
        }
        let step = t.step.map { s in
            CurrentStep(index: t.stepIndex ?? 0, target: s.target.id, zone: s.zone.rawValue, point: s.point?.rawValue,
                        technique: s.technique.rawValue, intensity: t.intensity ?? s.intensity, remainingSeconds: t.stepRemainingSeconds)
        }
        return Telemetry(sessionState: phase, sessionID: t.sessionID?.rawValue, program: programID(t.programID), step: step,
                         elapsedSeconds: t.sessionElapsedSeconds, pressureMMHg: t.pressuresMMHg.mapValues { ($0 * 10).rounded() / 10 },
                         motorTempC: (t.motorTemperatureC * 10).rounded() / 10, breathingBPM: t.breathingBPM,
                         faults: t.faults.map(\.kind.rawValue),
                         acknowledgeable: t.acknowledgeableFaults.isEmpty ? nil : t.acknowledgeableFaults.map(\.kind.rawValue),
                         lockout: t.painLockout.map { l in
                             Telemetry.Lockout(reason: AbortReason.painSignal.rawValue, zone: l.zone.rawValue, point: l.point?.rawValue,
                                               remainingSeconds: ((t.painLockoutRemainingSeconds ?? 0) * 10).rounded(.up) / 10)
                         },
                         intervalSeconds: interval)
    }

    static func faults(_ faults: [Fault]) -> [FaultReport] {
        faults.map { FaultReport(fault: $0.kind.rawValue, zone: $0.zone?.rawValue, detail: $0.detail) }
    }

    static func errorCode(_ e: EngineError) -> ErrorCode { ErrorCode(rawValue: e.code.rawValue) }

    static func protocolError(_ e: EngineError) -> ProtocolError { ProtocolError(code: errorCode(e), message: e.message) }
}
