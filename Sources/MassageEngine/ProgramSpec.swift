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
    public var steps: [StepSpec]

    public init(id: String, name: String, description: String? = nil, steps: [StepSpec]) {
        self.id = id
        self.name = name
        self.description = description
        self.steps = steps
    }
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

    enum CodingKeys: String, CodingKey {
        case target, technique, intensity
        case durationSeconds = "duration_s"
        case breathingBPM = "breathing_bpm"
    }

    public init(target: String, technique: String, intensity: Int, durationSeconds: Int, breathingBPM: Int? = nil) {
        self.target = target
        self.technique = technique
        self.intensity = intensity
        self.durationSeconds = durationSeconds
        self.breathingBPM = breathingBPM
    }
}
