import Foundation

/// One reason a program was refused, naming where: the step index (nil for
/// the program itself) and the field (`target`, `technique`, `intensity`,
/// `duration_s`, `breathing_bpm`, `id`, `name`, `steps`).
public struct ValidationIssue: Sendable, Equatable, CustomStringConvertible {
    public var stepIndex: Int?
    public var field: String
    public var message: String

    public init(stepIndex: Int?, field: String, message: String) {
        self.stepIndex = stepIndex
        self.field = field
        self.message = message
    }

    public var description: String {
        if let stepIndex { return "step \(stepIndex) \(field): \(message)" }
        return "\(field): \(message)"
    }
}

/// A program refused by validation, with every reason.
public struct ProgramValidationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var programID: String
    public var issues: [ValidationIssue]

    public var description: String {
        "program \"\(programID)\" is invalid: " + issues.map(\.description).joined(separator: "; ")
    }
}

/// Checks a `ProgramSpec` against the anatomy, the suitability table and
/// the limits, and lists every problem at once.
public enum ProgramValidator {
    /// The id pattern shared with device and site ids: `[a-z0-9][a-z0-9_-]{0,62}`.
    public static func isValidID(_ id: String) -> Bool {
        let bytes = Array(id.utf8)
        guard (1...63).contains(bytes.count) else { return false }
        func lowerAlnum(_ b: UInt8) -> Bool { (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) }
        guard lowerAlnum(bytes[0]) else { return false }
        return bytes.dropFirst().allSatisfy { lowerAlnum($0) || $0 == 0x2D || $0 == 0x5F }
    }

    /// Returns the validated program or throws every reason it is refused.
    public static func validate(_ spec: ProgramSpec, limits: EngineLimits = .default) throws(ProgramValidationError) -> Program {
        var issues: [ValidationIssue] = []
        func issue(_ step: Int?, _ field: String, _ message: String) {
            issues.append(ValidationIssue(stepIndex: step, field: field, message: message))
        }

        if !isValidID(spec.id) {
            issue(nil, "id", "'\(spec.id)' is not a valid id: use 1–63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit")
        }
        if spec.name.trimmingCharacters(in: .whitespaces).isEmpty {
            issue(nil, "name", "must not be empty")
        }
        if spec.steps.isEmpty {
            issue(nil, "steps", "a program needs at least one step")
        } else if spec.steps.count > HardLimits.maxStepsPerProgram {
            issue(nil, "steps", "\(spec.steps.count) steps is more than the \(HardLimits.maxStepsPerProgram) a program may hold")
        }

        let relaxation = spec.relaxation ?? false
        var steps: [ProgramStep] = []
        var pointsSeen: Set<AcupressurePoint> = []
        var total = 0

        for (index, step) in spec.steps.enumerated() {
            let target = Target(id: step.target)
            if target == nil {
                let hint = Target(id: step.target.lowercased()) != nil ? " (ids are lower-case)" : ""
                issue(index, "target", "unknown target '\(step.target)'\(hint); known: \(Target.knownIDs.joined(separator: ", "))")
            }
            let technique = Technique(rawValue: step.technique)
            if technique == nil {
                issue(index, "technique", "unknown technique '\(step.technique)'; known: \(Technique.knownIDs.joined(separator: ", "))")
            }

            var suitable = true
            if let target, let technique {
                let rule = Suitability.of(technique, on: target)
                switch rule {
                case .unsuited(let reason):
                    suitable = false
                    issue(index, "technique", "\(technique.rawValue) is not suited to the \(target.id): \(reason)")
                case .limited(let max, let reason):
                    if HardLimits.intensityLevels.contains(step.intensity), step.intensity > max {
                        issue(index, "intensity", "level \(step.intensity) is too strong for \(technique.rawValue) on the \(target.id) (at most \(max)): \(reason)")
                    }
                case .suited:
                    break
                }
            }

            if !HardLimits.intensityLevels.contains(step.intensity) {
                issue(index, "intensity", "level \(step.intensity) is outside \(HardLimits.intensityLevels.lowerBound)–\(HardLimits.intensityLevels.upperBound)")
            } else if let target {
                let pressure = HardLimits.pressure(level: step.intensity, zone: target.zone)
                let ceiling = limits.ceiling(target.zone)
                if pressure > ceiling {
                    issue(index, "intensity", "level \(step.intensity) is \(format(pressure)) mmHg on the \(target.zone.rawValue), over its ceiling of \(format(ceiling)) mmHg (highest allowed level: \(limits.maxLevel(on: target.zone)))")
                }
            }

            if step.durationSeconds <= 0 {
                issue(index, "duration_s", "\(step.durationSeconds) s must be positive")
            } else {
                total += step.durationSeconds
            }

            if let bpm = step.breathingBPM {
                if !HardLimits.breathingBPM.contains(bpm) {
                    issue(index, "breathing_bpm", "\(bpm) breaths per minute is outside \(HardLimits.breathingBPM.lowerBound)–\(HardLimits.breathingBPM.upperBound)")
                } else if relaxation, bpm > HardLimits.relaxationMaxBreathingBPM {
                    issue(index, "breathing_bpm", "\(bpm) breaths per minute is too fast for a relaxation program: use a slow cue of \(HardLimits.breathingBPM.lowerBound)–\(HardLimits.relaxationMaxBreathingBPM)")
                }
            } else if relaxation {
                issue(index, "breathing_bpm", "a relaxation program gives every step a slow breathing cue (\(HardLimits.breathingBPM.lowerBound)–\(HardLimits.relaxationMaxBreathingBPM) breaths per minute)")
            }

            var isCalibration = false
            if let point = target?.point, !pointsSeen.contains(point) {
                pointsSeen.insert(point)
                isCalibration = true
                if step.intensity > HardLimits.calibrationMaxIntensity {
                    issue(index, "intensity", "the first step at \(point.rawValue) is its calibration step (find the point with gentle pressure first): intensity must be at most \(HardLimits.calibrationMaxIntensity), not \(step.intensity)")
                }
                if step.durationSeconds > HardLimits.calibrationMaxSeconds {
                    issue(index, "duration_s", "the first step at \(point.rawValue) is its calibration step: at most \(HardLimits.calibrationMaxSeconds) s, not \(step.durationSeconds) s")
                }
            }

            if let target, let technique, suitable {
                steps.append(ProgramStep(
                    target: target, technique: technique, intensity: step.intensity,
                    durationSeconds: step.durationSeconds, breathingBPM: step.breathingBPM,
                    isCalibration: isCalibration
                ))
            }
        }

        if total > limits.maxSessionSeconds {
            issue(nil, "steps", "total duration \(total) s is longer than the session maximum of \(limits.maxSessionSeconds) s (\(limits.maxSessionSeconds / 60) min)")
        }

        if !issues.isEmpty { throw ProgramValidationError(programID: spec.id, issues: issues) }
        return Program(spec: spec, steps: steps)
    }
}
