/// The document form of a program: what a YAML file under Config/programs,
/// a `start_session` command's `steps` and a desired config's `programs`
/// all carry. Fields stay strings and plain numbers so that validation can
/// name every problem at once ("unknown target 'knee'") instead of failing
/// at the first decoding error. `ProgramValidator` turns a spec into a
/// validated `Program` or the full list of reasons it was refused.
public struct ProgramSpec: Codable, Sendable, Equatable {
    /// Stable id, `[a-z0-9][a-z0-9_-]{0,62}` (e.g. `calf-release`).
    public var id: String
    /// Human name shown on the device and the dashboard.
    public var name: String
    /// What the program is for, in the brief's words.
    public var description: String?
    /// A relaxation program: every step must carry a slow breathing cue
    /// (at most `HardLimits.relaxationMaxBreathingBPM`). Optional; absent
    /// means false.
    public var relaxation: Bool?
    public var steps: [StepSpec]

    public init(id: String, name: String, description: String? = nil, relaxation: Bool? = nil, steps: [StepSpec]) {
        self.id = id
        self.name = name
        self.description = description
        self.relaxation = relaxation
        self.steps = steps
    }

    /// The keys a program document may hold; `ProgramLibrary` refuses others.
    public static let documentKeys: Set<String> = ["id", "name", "description", "relaxation", "steps"]
}

/// One step of a program: a target (zone or point id), a technique, an
/// intensity level (1–10), a duration in seconds and an optional breathing
/// cue in breaths per minute.
public struct StepSpec: Codable, Sendable, Equatable {
    public var target: String
    public var technique: String
    public var intensity: Int
    public var durationSeconds: Int
    public var breathingBPM: Int?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case target, technique, intensity
        case durationSeconds = "duration_s"
        case breathingBPM = "breathing_bpm"
    }

    /// The keys a step may hold; `ProgramLibrary` refuses others.
    public static let documentKeys: Set<String> = Set(CodingKeys.allCases.map(\.rawValue))

    public init(target: String, technique: String, intensity: Int, durationSeconds: Int, breathingBPM: Int? = nil) {
        self.target = target
        self.technique = technique
        self.intensity = intensity
        self.durationSeconds = durationSeconds
        self.breathingBPM = breathingBPM
    }
}
