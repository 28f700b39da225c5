import FleetTestSupport
import Foundation
import Glibc
import MassageAgent
import MassageEngine
import MassageEngineTesting
import Synchronization
import Testing

// The driver that runs the engine in real time on its own thread. It lives
// in MassageAgent, the library that runs it; the engine's own tests call
// `tick()` by hand on a manual clock (Tests/MassageEngineTests).

@Suite("Live driver")
struct EngineDriverTests {

    @Test("at speed N the driver runs N ticks per real tick, with the same physics")
    func speedFactor() async throws {
        let h = try DriverRig()
        // 20 s of engine time; at speed 200 it takes about 0.1 s of real time.
        try h.engine.start(.steps([step("calf", "kneading", 5, 20)]))
        let driver = EngineDriver(engine: h.engine, speed: 200, realtimePriority: 10)
        let started = ContinuousClock.now
        let run = Task { await driver.run() }
        let finished = await h.waitUntil { h.types.contains("session_completed") }
        let elapsed = ContinuousClock.now - started
        run.cancel()
        await run.value
        #expect(finished)
        // At speed 1 the ticks are paced by real time, so 20 s of session
        // cannot take less than 20 s; at speed 200 about 0.1 s. The bound is
        // the real-time one: the parallel suite can starve the cooperative
        // pool for seconds (11 s once in CI with a 10 s bound), and the
        // batching below shows the speed factor exactly.
        #expect(elapsed < .seconds(20), "20 s of session must run faster than real time")
        #expect(h.engine.tickCount % 200 == 0, "ticks come in batches of the speed factor")
        // Same exact accounting as a test driving ticks by hand.
        #expect(h.engine.usage().milliseconds.byZone["calf"] == 20_000)
    }

    @Test("cancelling the driver releases the massager and ends the session as shutdown")
    func cancellation() async throws {
        let h = try DriverRig()
        try h.engine.start(.program("calf-release"))
        let run = Task { await EngineDriver(engine: h.engine, speed: 10, realtimePriority: 10).run() }
        #expect(await h.waitUntil { h.engine.tickCount > 100 })
        run.cancel()
        await run.value
        #expect(h.simulator.snapshot().released)
        #expect(h.abortReasons == [.shutdown])
        // The persistence loop and the final flush wrote the outcome.
        #expect(h.storage.persisted.usage.aborted(.shutdown) == 1)
        #expect(h.storage.persisted.activeSession == nil)
    }

    @Test("the persistence loop writes changes while the driver ticks")
    func persistenceLoop() async throws {
        let h = try DriverRig()
        let run = Task { await EngineDriver(engine: h.engine, persistenceInterval: .milliseconds(10), realtimePriority: 10).run() }
        // Ten minutes in real time: the session is still running whenever the
        // loop first writes, however busy the machine. (At 50× speed it
        // lasted 1.2 s, and a CI run whose pool was busy that long saw it
        // written only once it had ended.)
        try h.engine.start(.steps([step("thigh", "compression", 3, 600)]))
        #expect(await h.waitUntil { h.storage.persisted.activeSession != nil })
        run.cancel()
        await run.value
    }

    @Test("the control thread asks for SCHED_FIFO: granted with the privilege (root, or RLIMIT_RTPRIO as the systemd unit sets it), else EPERM reported")
    func realtimePriority() async throws {
        let h = try DriverRig()
        let driver = EngineDriver(engine: h.engine, realtimePriority: 10)
        #expect(driver.realtimeResult == -1)
        let run = Task { await driver.run() }
        #expect(await h.waitUntil { driver.realtimeResult != -1 })
        run.cancel()
        await run.value
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(14), &limit)  // RLIMIT_RTPRIO (not exported by the Glibc module)
        let privileged = geteuid() == 0 || limit.rlim_cur >= 10
        #expect(driver.realtimeResult == (privileged ? 0 : EPERM), "pthread_setschedparam gave \(driver.realtimeResult)")
    }

    @Test("every tick runs on the driver's own thread, outside Swift's cooperative pool, so a busy pool cannot delay one")
    func controlLoopOutsideThePool() async throws {
        // The massager records where each tick reads its sensors. Blocking
        // the whole pool to show the same thing would stall every other
        // test of the process (it did in CI); this shows the cause directly:
        // the driver of 752c33b ticked inside a task on the pool.
        let probe = WhereTicksRun(SimulatedMassager(seed: 7))
        let h = try DriverRig(hardware: probe)
        let run = Task { await EngineDriver(engine: h.engine).run() }
        #expect(await h.waitUntil { probe.reads.withLock { $0.count } >= 10 })
        run.cancel()
        await run.value
        let reads = probe.reads.withLock { $0 }
        #expect(reads.count >= 10)
        #expect(reads.allSatisfy { !$0.inTask }, "a tick ran inside a Swift task (on the cooperative pool)")
        // The kernel's name of the thread (what `top -H` shows), on every read.
        #expect(reads.allSatisfy { $0.thread == "engine-control" }, "threads: \(Set(reads.map(\.thread)))")
    }

    @Test("the live driver reports a control loop held up for 150 ms: the session is released and aborted control_overrun")
    func driverFindsLateLoop() async throws {
        let hardware = HangingMassager(SimulatedMassager(seed: 7))
        let h = try DriverRig(hardware: hardware)
        let run = Task { await EngineDriver(engine: h.engine).run() }
        try h.engine.start(.steps([step("thigh", "compression", 5, 600)]))
        #expect(await h.waitUntil { h.engine.telemetry().pressuresMMHg["thigh"] ?? 0 > 10 })
        hardware.hangNextRead.store(true, ordering: .releasing)
        #expect(await h.waitUntil { h.abortReasons == [.controlOverrun] })
        #expect(hardware.simulator.snapshot().released)
        run.cancel()
        await run.value
        #expect(h.engine.faults.map(\.kind) == [.controlOverrun])
    }
}

@Suite("Live drivers sharing a control thread")
struct SharedControlThreadTests {

    @Test("twenty engines on a group of one thread: every tick of every engine runs on that one thread, outside the pool, and cancelling each driver releases its massager")
    func oneThreadForMany() async throws {
        let group = ControlLoopGroup(threads: 1)
        let probes = (0..<20).map { WhereTicksRun(SimulatedMassager(seed: UInt64($0))) }
        let rigs = try probes.map { try DriverRig(hardware: $0) }
        for rig in rigs { try rig.engine.start(.steps([step("calf", "kneading", 5, 600)])) }
        let runs = rigs.map { rig in Task { await EngineDriver(engine: rig.engine, controlGroup: group).run() } }
        #expect(await rigs[0].waitUntil { probes.allSatisfy { $0.reads.withLock { $0.count } >= 10 } })
        #expect(group.engineCount == 20)
        for run in runs { run.cancel() }
        for run in runs { await run.value }
        #expect(group.engineCount == 0)
        let reads = probes.flatMap { $0.reads.withLock { $0 } }
        #expect(Set(reads.map(\.threadID)).count == 1, "ticks ran on \(Set(reads.map(\.threadID)).count) threads")
        #expect(reads.allSatisfy { !$0.inTask && $0.thread == "engine-control" })
        for (probe, rig) in zip(probes, rigs) {
            #expect(probe.simulator.snapshot().released)
            #expect(rig.abortReasons == [.shutdown])
        }
    }

    @Test("a group of two threads splits its engines between them, and a thread that lost its engines stops and starts again for new ones")
    func twoLanes() async throws {
        let group = ControlLoopGroup(threads: 2)
        let probes = (0..<4).map { WhereTicksRun(SimulatedMassager(seed: UInt64($0))) }
        let rigs = try probes.map { try DriverRig(hardware: $0) }
        let runs = rigs.map { rig in Task { await EngineDriver(engine: rig.engine, controlGroup: group).run() } }
        #expect(await rigs[0].waitUntil { probes.allSatisfy { $0.reads.withLock { $0.count } >= 5 } })
        for run in runs { run.cancel() }
        for run in runs { await run.value }
        #expect(Set(probes.flatMap { $0.reads.withLock { $0 }.map(\.threadID) }).count == 2)
        // Again, after every thread has ended.
        let again = WhereTicksRun(SimulatedMassager(seed: 9))
        let rig = try DriverRig(hardware: again)
        let run = Task { await EngineDriver(engine: rig.engine, controlGroup: group).run() }
        #expect(await rig.waitUntil { again.reads.withLock { $0.count } >= 5 })
        run.cancel()
        await run.value
    }
}

/// An engine on a manual clock (the driver paces ticks by the monotonic
/// clock of the machine; the manual clock only stamps events) with the
/// built-in programs, the simulator or a wrapper of it, in-memory storage
/// and a record of its events.
private struct DriverRig {
    let simulator = SimulatedMassager(seed: 7)
    let storage = InMemoryEngineStorage()
    let engine: MassageEngine
    private let events = EventRecord()

    init(hardware: (any MassagerHardware)? = nil) throws {
        let programs = try ProgramLibrary.load(directory: AgentProcess.repositoryRoot.appendingPathComponent("Config/programs"))
        let events = self.events
        engine = try MassageEngine(programs: programs, hardware: hardware ?? simulator, clock: ManualClock(), storage: storage,
                                   eventObserver: { event in events.entries.withLock { $0.append(event) } })
    }

    /// Event wire types, in order.
    var types: [String] { events.entries.withLock { $0.map(\.type) } }
    var abortReasons: [AbortReason] { events.entries.withLock { $0.compactMap(\.abortReason) } }

    /// Polls `condition` for up to a minute of real time (a loaded CI
    /// machine can hold the driver's thread for seconds).
    func waitUntil(_ condition: () -> Bool) async -> Bool {
        do {
            try await FleetTestSupport.waitUntil(timeout: .seconds(60), pollEvery: .milliseconds(5), "the driver's effect") { condition() }
            return true
        } catch {
            return false
        }
    }
}

/// The engine's events, in order, as its observer hands them over.
private final class EventRecord: Sendable {
    let entries = Mutex<[EngineEvent]>([])
}

private func step(_ target: String, _ technique: String, _ intensity: Int, _ seconds: Int) -> StepSpec {
    StepSpec(target: target, technique: technique, intensity: intensity, durationSeconds: seconds)
}

/// A massager that notes, at every sensor read (once per tick), which
/// thread the tick runs on and whether it runs inside a Swift task.
private final class WhereTicksRun: MassagerHardware {
    let simulator: SimulatedMassager
    let reads = Mutex<[(thread: String, threadID: UInt, inTask: Bool)]>([])

    init(_ simulator: SimulatedMassager) { self.simulator = simulator }

    func read(engineTime: Double) -> SensorReadings {
        let inTask = withUnsafeCurrentTask { $0 != nil }
        let thread = kernelThreadName()
        let id = UInt(bitPattern: Int(bitPattern: pthread_self()))
        reads.withLock { $0.append((thread, id, inTask)) }
        return simulator.read(engineTime: engineTime)
    }

    func apply(_ command: ActuatorCommand) { simulator.apply(command) }
    func releaseAll() { simulator.releaseAll() }
}

/// The kernel's name of the calling thread (`/proc/thread-self/comm`, what
/// `top -H` shows). Read here rather than through the driver's `ThreadName`,
/// which is `package`: Tests/TSan compiles these tests in a package of its own.
private func kernelThreadName() -> String {
    let fd = open("/proc/thread-self/comm", O_RDONLY)
    guard fd >= 0 else { return "" }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 32)
    let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard count > 0 else { return "" }
    return String(decoding: buffer[..<count].prefix { $0 != 10 }, as: UTF8.self)
}

/// A massager whose next sensor read, when armed, takes 150 ms: a bus that
/// hangs, a driver stuck in the kernel.
private final class HangingMassager: MassagerHardware {
    let simulator: SimulatedMassager
    let hangNextRead = Atomic<Bool>(false)

    init(_ simulator: SimulatedMassager) { self.simulator = simulator }

    func read(engineTime: Double) -> SensorReadings {
        if hangNextRead.exchange(false, ordering: .acquiringAndReleasing) {
            _ = DispatchSemaphore(value: 0).wait(timeout: .now() + .milliseconds(150))
        }
        return simulator.read(engineTime: engineTime)
    }

    func apply(_ command: ActuatorCommand) { simulator.apply(command) }
    func releaseAll() { simulator.releaseAll() }
}
