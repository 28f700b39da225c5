// engine-bench: control ticks per second of CPU time.
//
//   swift run -c release engine-bench [--ticks N] [--programs DIR]
//
// Runs the MassageEngine with the simulated massager through the built-in
// programs back to back (a session always running, the costly case) and
// measures process CPU time (CLOCK_PROCESS_CPUTIME_ID) per tick. In the same
// run it measures an idle engine and, as the reference, the simulator alone
// (one read + one apply per tick): the part a real massager's driver would
// replace. Goal: ≥ 1,000,000 session ticks per CPU second.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import FleetTestKit
import Foundation
import MassageEngine
import MassageEngineTesting

func cpuSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func option(_ name: String) -> String? {
    let args = CommandLine.arguments
    guard let index = args.firstIndex(of: name), index + 1 < args.count else { return nil }
    return args[index + 1]
}

let ticks = Int(option("--ticks") ?? "") ?? 5_000_000
let programsPath = option("--programs") ?? "Config/programs"

let library: ProgramLibrary
if FileManager.default.fileExists(atPath: programsPath) {
    library = try ProgramLibrary.load(directory: URL(fileURLWithPath: programsPath))
} else {
    // Run from elsewhere: a program of our own, every zone.
    library = try ProgramLibrary().adding([ProgramSpec(id: "bench", name: "Bench", steps: [
        StepSpec(target: "thigh", technique: "kneading", intensity: 6, durationSeconds: 120),
        StepSpec(target: "calf", technique: "rolling", intensity: 5, durationSeconds: 120),
        StepSpec(target: "shin", technique: "circular", intensity: 4, durationSeconds: 120),
        StepSpec(target: "achilles", technique: "rolling", intensity: 3, durationSeconds: 120),
        StepSpec(target: "heel", technique: "shiatsu", intensity: 4, durationSeconds: 120),
        StepSpec(target: "arch", technique: "tapping", intensity: 5, durationSeconds: 120),
    ])])
}
let ids = library.ids

/// Session ticks: programs back to back, persistence flushed as the driver would.
func measureSessions(_ count: Int) throws -> (seconds: Double, sessions: Int) {
    let engine = try MassageEngine(programs: library, hardware: SimulatedMassager(seed: 1), clock: ManualClock(), storage: InMemoryEngineStorage())
    var next = 0
    var sessions = 0
    func startNext() throws {
        try engine.start(.program(ids[next % ids.count]))
        next += 1
        sessions += 1
    }
    try startNext()
    let begin = cpuSeconds()
    var done = 0
    while done < count {
        let batch = min(4096, count - done)
        for _ in 0..<batch { engine.tick() }
        done += batch
        if engine.telemetry().state == .idle { try startNext() }
        if done % (4096 * 64) == 0 { try engine.flushPersistence() }
    }
    try engine.flushPersistence()
    return (cpuSeconds() - begin, sessions)
}

func measureIdle(_ count: Int) throws -> Double {
    let engine = try MassageEngine(programs: library, hardware: SimulatedMassager(seed: 1), clock: ManualClock(), storage: InMemoryEngineStorage())
    let begin = cpuSeconds()
    for _ in 0..<count { engine.tick() }
    return cpuSeconds() - begin
}

func measureSimulatorAlone(_ count: Int) -> Double {
    let sim = SimulatedMassager(seed: 1)
    var pressures = ZoneValues<Double>(repeating: 0)
    pressures.calf = 80
    let command = ActuatorCommand(pressuresMMHg: pressures, technique: .kneading, motorDuty: 0.35)
    var sink = 0.0
    let begin = cpuSeconds()
    for i in 0..<count {
        sink += sim.read(engineTime: Double(i) * 0.02).pressuresMMHg.calf
        sim.apply(command)
    }
    let elapsed = cpuSeconds() - begin
    if sink.isNaN { print("") }  // keep the loop
    return elapsed
}

func rate(_ count: Int, _ seconds: Double) -> String {
    let perSecond = Double(count) / seconds
    return "\(Int(perSecond).formatted()) ticks/s of CPU (\(String(format: "%.0f", seconds / Double(count) * 1e9)) ns/tick)"
}

// Warm up (page in code, fill caches).
_ = try measureSessions(100_000)

let session = try measureSessions(ticks)
let idle = try measureIdle(ticks)
let reference = measureSimulatorAlone(ticks)

let engineTime = Double(ticks) * 0.02
print("engine-bench: \(ticks.formatted()) control ticks of 20 ms (\(String(format: "%.1f", engineTime / 3600)) h of engine time) per measurement")
print("  session ticks:  \(rate(ticks, session.seconds)), \(session.sessions) sessions of \(ids.count) programs")
print("  idle ticks:     \(rate(ticks, idle))")
print("  reference, simulator alone (read + apply): \(rate(ticks, reference))")
let sessionRate = Double(ticks) / session.seconds
print("  goal ≥ 1,000,000 session ticks/s of CPU: \(sessionRate >= 1_000_000 ? "met" : "NOT met") (\(String(format: "%.0f", sessionRate / 50))× real time on one core)")
BenchResult("engine session ticks per CPU second", value: sessionRate, unit: "ticks/s", reference: Double(ticks) / reference,
            referenceName: "the simulator alone", goal: 1_000_000, .atLeast).print()
