import Foundation
import MassageEngine
import MassageEngineTesting
import Synchronization
import Testing

/// Records what happened, in order: events from the engine's observer and,
/// where a test wants it, hardware calls (see `RecordingMassager`).
final class Journal: Sendable {
    private let entries = Mutex<[Entry]>([])

    enum Entry: Sendable, Equatable {
        case event(EngineEvent)
        case release
        case apply(ActuatorCommand)
    }

    func record(_ entry: Entry) { entries.withLock { $0.append(entry) } }
    func clear() { entries.withLock { $0.removeAll() } }
    var all: [Entry] { entries.withLock { $0 } }

    var events: [EngineEvent] {
        all.compactMap { if case .event(let e) = $0 { return e } else { return nil } }
    }

    /// Event wire types, in order.
    var types: [String] { events.map(\.type) }

    var abortReasons: [AbortReason] { events.compactMap(\.abortReason) }
}

/// Wraps the simulator and journals the engine's hardware calls.
final class RecordingMassager: MassagerHardware {
    let simulator: SimulatedMassager
    let journal: Journal

    init(simulator: SimulatedMassager, journal: Journal) {
        self.simulator = simulator
        self.journal = journal
    }

    func read(engineTime: Double) -> SensorReadings { simulator.read(engineTime: engineTime) }

    func apply(_ command: ActuatorCommand) {
        journal.record(.apply(command))
        simulator.apply(command)
    }

    func releaseAll() {
        journal.record(.release)
        simulator.releaseAll()
    }
}

/// An engine on a manual clock with the simulator, in-memory storage and a
/// journal of its events. Ticks advance the manual clock with them, so a
/// test runs an hour of sessions in milliseconds.
struct Harness {
    let clock: ManualClock
    let simulator: SimulatedMassager
    let storage: InMemoryEngineStorage
    let journal: Journal
    let engine: MassageEngine

    init(
        configuration: EngineConfiguration = EngineConfiguration(),
        library: ProgramLibrary? = nil,
        clock: ManualClock = ManualClock(),
        simulator: SimulatedMassager = SimulatedMassager(seed: 7),
        storage: InMemoryEngineStorage = InMemoryEngineStorage(),
        recordHardware: Bool = false
    ) throws {
        self.clock = clock
        self.simulator = simulator
        self.storage = storage
        let journal = Journal()
        self.journal = journal
        let hardware: any MassagerHardware = recordHardware ? RecordingMassager(simulator: simulator, journal: journal) : simulator
        engine = try MassageEngine(
            programs: try library ?? Harness.builtIns(),
            configuration: configuration,
            hardware: hardware,
            clock: clock,
            storage: storage,
            eventObserver: { journal.record(.event($0)) }
        )
    }

    /// The same device after a restart: a new engine on the same storage,
    /// clock and massager (the old engine is simply dropped, as in a crash).
    func restarted(configuration: EngineConfiguration = EngineConfiguration()) throws -> Harness {
        try Harness(configuration: configuration, library: engine.programs, clock: clock, simulator: simulator, storage: storage)
    }

    var tickSeconds: Double { Double(engine.controlTick / .milliseconds(1)) / 1000 }

    /// One tick of engine time, with the wall clock moved by the same amount.
    func tick() {
        clock.advance(by: tickSeconds)
        engine.tick()
    }

    func ticks(_ count: Int) {
        for _ in 0..<count { tick() }
    }

    func run(seconds: Double) {
        ticks(Int((seconds / tickSeconds).rounded()))
    }

    /// Ticks until no session runs; false if that takes longer than `limit` seconds.
    @discardableResult
    func runUntilIdle(limit: Double = 3600) -> Bool {
        let maxTicks = Int(limit / tickSeconds)
        for _ in 0..<maxTicks {
            if engine.telemetry().state == .idle { return true }
            tick()
        }
        return engine.telemetry().state == .idle
    }

    /// A session at level 8 on the thigh (144 mmHg), settled after 6 s.
    static func pressing(recordHardware: Bool = false, configuration: EngineConfiguration = EngineConfiguration()) throws -> Harness {
        let h = try Harness(configuration: configuration, recordHardware: recordHardware)
        try h.engine.start(.steps([step("thigh", "compression", 8, 600), step("calf", "compression", 5, 300)]))
        h.run(seconds: 6)
        #expect(h.simulator.snapshot().pressuresMMHg.thigh > 140)
        return h
    }

    // MARK: - Built-in programs

    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    static var programsDirectory: URL {
        repositoryRoot.appendingPathComponent("Config/programs")
    }

    static let builtInIDs = ["calf-release", "full-leg-circulation", "knee-leg-relief", "plantar-relief", "shin-recovery", "sole-vitality"]

    static func builtIns() throws -> ProgramLibrary {
        try ProgramLibrary.load(directory: programsDirectory)
    }
}

extension Array where Element == ZoneValues<Double> {
    func maximum(_ zone: Zone) -> Double { map { $0[zone] }.max() ?? 0 }
}

func step(_ target: String, _ technique: String, _ intensity: Int, _ seconds: Int, bpm: Int? = nil) -> StepSpec {
    StepSpec(target: target, technique: technique, intensity: intensity, durationSeconds: seconds, breathingBPM: bpm)
}
