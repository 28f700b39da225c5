/// A program that passed `ProgramValidator` against some `EngineLimits`.
/// The engine validates again against the limits in force when a session
/// starts, so a program loaded before a ceiling was lowered cannot slip by.
public struct Program: Sendable, Equatable, Identifiable {
    /// The document it came from.
    public let spec: ProgramSpec
    public let steps: [ProgramStep]

    public var id: String { spec.id }
    public var name: String { spec.name }
    public var isRelaxation: Bool { spec.relaxation ?? false }

    /// Sum of the step durations.
    public var totalSeconds: Int { steps.reduce(0) { $0 + $1.durationSeconds } }

    init(spec: ProgramSpec, steps: [ProgramStep]) {
        self.spec = spec
        self.steps = steps
    }
}

/// One validated step.
public struct ProgramStep: Sendable, Equatable {
    public let target: Target
    public let technique: Technique
    /// Level 1–10 as written in the program.
    public let intensity: Int
    public let durationSeconds: Int
    public let breathingBPM: Int?
    /// The first step at a point: gentle and short, to find the point (the
    /// brief's "apply gentle pressure… observe reactions"). A session-wide
    /// intensity does not raise it.
    public let isCalibration: Bool

    public var zone: Zone { target.zone }
    public var point: AcupressurePoint? { target.point }

    public init(target: Target, technique: Technique, intensity: Int, durationSeconds: Int, breathingBPM: Int? = nil, isCalibration: Bool = false) {
        self.target = target
        self.technique = technique
        self.intensity = intensity
        self.durationSeconds = durationSeconds
        self.breathingBPM = breathingBPM
        self.isCalibration = isCalibration
    }
}
