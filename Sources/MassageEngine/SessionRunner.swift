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
    /// Engine monotonic time at the start (seconds), for the time limit in real time.
    let startedMonotonic: Double
    /// How far the session's levels are scaled from the program's own (nil:
    /// as written). Set by a session-wide intensity and by adjustments.
    var scale: Double?
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

    var step: ProgramStep { program.steps[stepIndex] }

    func remainingSeconds(dt: Double) -> Double {
        let rest = program.steps[(stepIndex + 1)...].reduce(0) { $0 + $1.durationSeconds }
        return Double(stepTotalTicks - stepTicks) * dt + Double(rest)
    }
}

/// Runs one session at a time, as a pure value: each `advance` moves the
/// session by one tick and returns the command for the hardware (before the
/// supervisor's final clamp) or the outcome when it ends. It never touches
/// the hardware, storage or the clock.
///
/// Gentleness (docs/engine.md, "Intensity"): a session-wide intensity or an
/// adjustment scales the program's profile instead of flattening it, so a
/// gentle start and cool-down stay gentler than the peak; calibration steps
/// are never raised by a session-wide intensity and never above level 3 by
/// an adjustment; every level stays within what its step allows.
struct SessionRunner {
    struct Timing {
        let tickMs: Int64
        let dt: Double
        let softStopTicks: Int
        let checkpointTicks: Int
        let rampUpPerTick: Double
        let rampDownPerTick: Double
    }

    /// What one tick of the session produced.
    struct TickResult {
        /// The command for this tick (nil when the session ended: release).
        var command: ActuatorCommand?
        /// The session ended this tick, with this outcome.
        var finished: SessionOutcome?
        /// A new step began this tick.
        var stepBegan = false
        /// The session's usage should be checkpointed into its marker.
        var checkpoint = false
    }

    let timing: Timing
    var session: ActiveSession?
    /// Pressure envelope per zone: where the ramps are, before the technique's pattern.
    private(set) var ramped = ZoneValues<Double>(repeating: 0)

    init(timing: Timing) {
        self.timing = timing
    }

    // MARK: - Levels

    /// The program's peak: its highest level outside calibration steps.
    static func peak(of program: Program) -> Int {
        program.steps.filter { !$0.isCalibration }.map(\.intensity).max() ?? program.steps.map(\.intensity).max() ?? 1
    }

    /// The scale a session-wide intensity means: its level at the program's peak.
    static func scale(intensity: Int?, program: Program) -> Double? {
        intensity.map { Double($0) / Double(peak(of: program)) }
    }

    /// The level `step` runs at under `scale`: its written level scaled and
    /// clamped to what the step allows; a calibration step is never raised.
    static func level(for step: ProgramStep, scale: Double?, limits: EngineLimits) -> Int {
        guard let scale else { return step.intensity }
        let scaled = Int((Double(step.intensity) * scale).rounded())
        if step.isCalibration { return max(1, min(step.intensity, scaled)) }
        return max(1, min(scaled, limits.maxLevel(step.technique, on: step.target)))
    }

    /// The highest level an adjustment may set on `step`, and why it stops there.
    static func adjustmentLimit(for step: ProgramStep, limits: EngineLimits) -> (level: Int, why: String) {
        let allowed = limits.maxLevel(step.technique, on: step.target)
        if step.isCalibration, allowed > HardLimits.calibrationMaxIntensity {
            return (HardLimits.calibrationMaxIntensity, "this is the calibration step at \(step.target.id): gentle pressure to find the point, at most level \(HardLimits.calibrationMaxIntensity)")
        }
        let rule = Suitability.of(step.technique, on: step.target)
        if rule.maxIntensity < limits.maxLevel(on: step.zone), let reason = rule.reason {
            return (allowed, "\(step.technique.rawValue) on the \(step.target.id) is limited to level \(allowed): \(reason)")
        }
        return (allowed, "the \(step.zone.rawValue) ceiling of \(format(limits.ceiling(step.zone))) mmHg allows at most level \(allowed)")
    }

    func stepTicks(_ step: ProgramStep) -> Int {
        Int(Int64(step.durationSeconds) * 1000 / timing.tickMs)
    }

    // MARK: - Lifecycle

    mutating func begin(program: Program, intensity: Int?, id: SessionID, scheduleID: ScheduleID?, at now: Date, monotonic: Double, limits: EngineLimits) -> ActiveSession {
        let first = program.steps[0]
        let scale = Self.scale(intensity: intensity, program: program)
        let s = ActiveSession(
            id: id, program: program, scheduleID: scheduleID, startedAt: now, startedMonotonic: monotonic,
            scale: scale, stepTotalTicks: stepTicks(first), level: Self.level(for: first, scale: scale, limits: limits)
        )
        session = s
        return s
    }

    /// Moves the current step's uncounted ticks into the session's tally.
    func fold(_ s: inout ActiveSession) {
        guard s.uncountedTicks > 0 else { return }
        s.usage.add(milliseconds: Int64(s.uncountedTicks) * timing.tickMs, step: s.step, programID: s.program.id)
        s.uncountedTicks = 0
    }

    /// Ends the session now (its time folded in) and returns it. The caller
    /// releases the actuators.
    mutating func end() -> ActiveSession? {
        guard var s = session.take() else { return nil }
        fold(&s)
        ramped = ZoneValues(repeating: 0)
        return s
    }

    /// Every ramp at zero: after a release.
    mutating func dropRamps() {
        ramped = ZoneValues(repeating: 0)
    }

    /// True while any zone is ramped above zero.
    var hasPressure: Bool { Zone.allCases.contains { ramped[$0] > 0 } }

    mutating func stop(_ outcome: SessionOutcome) throws(EngineError) {
        guard var s = session else { throw EngineError(.notFound, "no session is running") }
        if case .stopping = s.phase { return }
        fold(&s)
        s.phase = .stopping(outcome)
        session = s
    }

    /// True if the phase changed.
    mutating func pause() throws(EngineError) -> Bool {
        guard var s = session else { throw EngineError(.notFound, "no session is running") }
        switch s.phase {
        case .paused: return false
        case .stopping: throw EngineError(.busy, "session \(s.id) is stopping")
        case .running:
            fold(&s)
            s.phase = .paused
            session = s
            return true
        }
    }

    /// True if the phase changed.
    mutating func resume() throws(EngineError) -> Bool {
        guard var s = session else { throw EngineError(.notFound, "no session is running") }
        switch s.phase {
        case .running: return false
        case .stopping: throw EngineError(.busy, "session \(s.id) is stopping")
        case .paused:
            s.phase = .running
            session = s
            return true
        }
    }

    /// Sets the current step's level and scales the rest of the session by
    /// the same ratio to their written levels.
    mutating func adjust(_ level: Int, limits: EngineLimits) throws(EngineError) {
        guard var s = session else { throw EngineError(.notFound, "no session is running") }
        guard HardLimits.intensityLevels.contains(level) else {
            throw EngineError(.invalidParams, "intensity \(level) is outside \(HardLimits.intensityLevels.lowerBound)–\(HardLimits.intensityLevels.upperBound)")
        }
        if case .stopping = s.phase { throw EngineError(.busy, "session \(s.id) is stopping") }
        let limit = Self.adjustmentLimit(for: s.step, limits: limits)
        if level > limit.level {
            throw EngineError(.invalidParams, "level \(level) is refused: \(limit.why)")
        }
        s.scale = Double(level) / Double(s.step.intensity)
        s.level = level
        session = s
    }

    // MARK: - One tick

    /// Advances the session by one tick. `overTime`: the session has run
    /// longer than allowed (in ticks or in real time): it soft-stops
    /// `time_limit`.
    mutating func advance(limits: EngineLimits, overTime: Bool) -> TickResult {
        var result = TickResult()
        guard var s = session.take() else { return result }  // moved out: no copy while it changes
        s.elapsedTicks += 1

        if overTime, s.phase == .running || s.phase == .paused {
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
                    s.stepTotalTicks = stepTicks(s.step)
                    s.level = Self.level(for: s.step, scale: s.scale, limits: limits)
                    result.stepBegan = true
                } else {
                    // The last step's own ramp has brought pressure to zero.
                    session = consume s
                    result.finished = .completed
                    return result
                }
            }
            if s.ticksSinceCheckpoint >= timing.checkpointTicks {
                s.ticksSinceCheckpoint = 0
                fold(&s)
                result.checkpoint = true
            }
        }

        // Goals: the current step's pressure in its zone while running, zero otherwise.
        let step = s.step
        var goalZone: Zone?
        var goal = 0.0
        if s.phase == .running {
            goalZone = step.zone
            goal = HardLimits.pressure(level: s.level, zone: step.zone)
            if s.stepIndex == s.program.steps.count - 1 {
                // Soft stop at the end of the program, inside the last step.
                let remaining = s.stepTotalTicks - s.stepTicks
                if remaining < timing.softStopTicks { goal *= Double(remaining) / Double(timing.softStopTicks) }
            }
        }

        var command = ActuatorCommand.idle
        var allZero = true
        for zone in Zone.allCases {
            let target = zone == goalZone ? goal : 0
            let current = ramped[zone]
            let next = target > current ? min(target, current + timing.rampUpPerTick) : max(target, current - timing.rampDownPerTick)
            ramped[zone] = next
            if next > 0 { allZero = false }
            command.pressuresMMHg[zone] = next
        }

        if case .stopping(let outcome) = s.phase, allZero {
            session = consume s
            result.finished = outcome
            return result
        }

        if let zone = goalZone {
            let pattern = step.technique.modulation(at: Double(s.stepTicks) * timing.dt)
            command.pressuresMMHg[zone] = ramped[zone] * pattern
            command.technique = step.technique
            command.motorDuty = step.technique.motorLoad * ramped[zone] / HardLimits.ceiling(zone)
        }
        result.command = command
        session = consume s  // a move, not a copy: the tick must not retain the program
        return result
    }
}
