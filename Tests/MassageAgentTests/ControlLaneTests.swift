import FleetTestSupport
import Foundation
@testable import MassageAgent
import MassageEngine
import MassageEngineTesting
import Synchronization
import Testing

// The rule of one control period for the engines that share a control
// thread (ControlLoopGroup.swift), driven here without a thread: each test
// calls `runPeriod` with a time source of its own, so lateness, pain and
// persistence are shown exactly, with no sleeps.

@Suite("Control lane: many engines on one control thread")
struct ControlLaneTests {
    static let period: Int64 = 20_000_000  // 20 ms, the engines' tick

    @Test("every engine of a lane is ticked its speed times each period")
    func ticksEachEngine() throws {
        let a = try LaneEngine(), b = try LaneEngine()
        var lane = ControlLane(period: Self.period)
        lane.add(a.member(speed: 3))
        lane.add(b.member(speed: 1))
        var deadline: Int64 = 1_000_000_000
        for _ in 0..<10 {
            _ = lane.runPeriod(deadline: deadline) { deadline }
            deadline = lane.nextDeadline(after: deadline, woke: deadline)
        }
        #expect(a.engine.tickCount == 30)
        #expect(b.engine.tickCount == 10)
    }

    @Test("an engine whose ticks start a period late is told; past five ticks with pressure on it is released and aborted control_overrun, the engine before it is not")
    func latenessIsPerEngine() throws {
        let onTime = try LaneEngine(), late = try LaneEngine()
        var lane = ControlLane(period: Self.period)
        lane.add(onTime.member())
        lane.add(late.member())
        for engine in [onTime, late] { try engine.engine.start(.steps([LaneEngine.step("thigh", 5, 600)])) }
        var deadline: Int64 = 1_000_000_000
        // On time until both have pressure on.
        for _ in 0..<1000 where (late.engine.telemetry().pressuresMMHg["thigh"] ?? 0) <= 10 {
            _ = lane.runPeriod(deadline: deadline) { deadline }
            deadline = lane.nextDeadline(after: deadline, woke: deadline)
        }
        #expect((onTime.engine.telemetry().pressuresMMHg["thigh"] ?? 0) > 10)
        // The first engine's ticks start on time; the work before the second
        // one's took 150 ms (7.5 ticks).
        var reads = 0
        _ = lane.runPeriod(deadline: deadline) {
            reads += 1
            return reads == 1 ? deadline : deadline + 150_000_000
        }
        #expect(late.abortReasons == [.controlOverrun])
        #expect(late.simulator.snapshot().released)
        #expect(late.engine.faults.map(\.kind) == [.controlOverrun])
        #expect(onTime.abortReasons.isEmpty)
        #expect(onTime.engine.faults.isEmpty)
    }

    @Test("a wake-up a period late is counted for every engine; a late engine at rest is only counted")
    func latenessAtRest() throws {
        let idle = try LaneEngine()
        var lane = ControlLane(period: Self.period)
        lane.add(idle.member())
        _ = lane.runPeriod(deadline: 0) { 200_000_000 }
        #expect(idle.engine.faults.isEmpty)
        #expect(idle.abortReasons.isEmpty)
        #expect(idle.engine.tickCount == 1)
    }

    @Test("a pain press on one engine of a shared lane releases it within the period that reads it")
    func painInSharedLane() throws {
        let engines = try (0..<5).map { _ in try LaneEngine() }
        var lane = ControlLane(period: Self.period)
        for e in engines {
            lane.add(e.member())
            try e.engine.start(.steps([LaneEngine.step("calf", 5, 600)]))
        }
        var deadline: Int64 = 0
        for _ in 0..<1000 where engines.contains(where: { ($0.engine.telemetry().pressuresMMHg["calf"] ?? 0) <= 10 }) {
            _ = lane.runPeriod(deadline: deadline) { deadline }
            deadline = lane.nextDeadline(after: deadline, woke: deadline)
        }
        let pressed = engines[3]
        pressed.simulator.inject(.painButton)
        _ = lane.runPeriod(deadline: deadline) { deadline }
        #expect(pressed.simulator.snapshot().released)
        #expect(pressed.abortReasons == [.painSignal])
        for (i, other) in engines.enumerated() where i != 3 {
            #expect(!other.simulator.snapshot().released)
            #expect(other.abortReasons.isEmpty)
        }
    }

    @Test("the persistence loop is woken every persistence interval when changes are pending, and not otherwise")
    func persistenceWakeups() throws {
        let e = try LaneEngine()
        let wakeups = Atomic<Int>(0)
        var lane = ControlLane(period: Self.period)
        // Every 5 periods (100 ms of 20 ms ticks).
        lane.add(e.member(checkEvery: 5, wake: { wakeups.add(1, ordering: .relaxed) }))
        try e.engine.start(.steps([LaneEngine.step("thigh", 3, 600)]))
        #expect(e.engine.hasPendingPersistence)
        for period in 1...4 {
            _ = lane.runPeriod(deadline: Int64(period) * Self.period) { Int64(period) * Self.period }
        }
        #expect(wakeups.load(ordering: .relaxed) == 0, "woken before the interval")
        _ = lane.runPeriod(deadline: 5 * Self.period) { 5 * Self.period }
        #expect(wakeups.load(ordering: .relaxed) == 1)
    }

    @Test("an idle engine with nothing pending never wakes its persistence loop")
    func noWakeupsWhenNothingPending() throws {
        let e = try LaneEngine()
        try e.engine.flushPersistence()
        let wakeups = Atomic<Int>(0)
        var lane = ControlLane(period: Self.period)
        lane.add(e.member(checkEvery: 5, wake: { wakeups.add(1, ordering: .relaxed) }))
        for period in 1...50 {
            _ = lane.runPeriod(deadline: Int64(period) * Self.period) { Int64(period) * Self.period }
        }
        #expect(!e.engine.hasPendingPersistence)
        #expect(wakeups.load(ordering: .relaxed) == 0)
    }

    @Test("an engine that leaves is dropped before its next tick, and returned for its driver to be told")
    func leaving() throws {
        let stays = try LaneEngine(), goes = try LaneEngine()
        var lane = ControlLane(period: Self.period)
        let leave = LeaveSignal()
        lane.add(stays.member())
        lane.add(goes.member(leave: leave))
        _ = lane.runPeriod(deadline: 0) { 0 }
        leave.request()
        let gone = lane.runPeriod(deadline: Self.period) { Self.period }
        #expect(gone.map { ObjectIdentifier($0.engine) } == [ObjectIdentifier(goes.engine)])
        #expect(goes.engine.tickCount == 1)
        #expect(stays.engine.tickCount == 2)
        #expect(lane.count == 1)
    }

    @Test("deadlines follow one another a period apart; far behind, the loop carries on from now instead of bursting")
    func deadlines() {
        let lane = ControlLane(period: Self.period)
        #expect(lane.nextDeadline(after: 0, woke: 3_000_000) == Self.period)
        // Five periods behind is still caught up tick by tick…
        #expect(lane.nextDeadline(after: 0, woke: 6 * Self.period) == Self.period)
        // …more than that is not.
        #expect(lane.nextDeadline(after: 0, woke: 7 * Self.period) == 8 * Self.period)
    }
}

/// An engine on a manual clock with the simulator, in-memory storage and a
/// record of its abort reasons, and the lane member that ticks it.
private struct LaneEngine {
    let simulator = SimulatedMassager(seed: 7)
    let engine: MassageEngine
    private let record: Record

    private final class Record: Sendable {
        let aborts = Synchronization.Mutex<[AbortReason]>([])
    }

    init() throws {
        let programs = try ProgramLibrary.load(directory: AgentProcess.repositoryRoot.appendingPathComponent("Config/programs"))
        let record = Record()
        self.record = record
        engine = try MassageEngine(programs: programs, hardware: simulator, clock: ManualClock(), storage: InMemoryEngineStorage(),
                                   eventObserver: { event in if let reason = event.abortReason { record.aborts.withLock { $0.append(reason) } } })
    }

    var abortReasons: [AbortReason] { record.aborts.withLock { $0 } }

    func member(speed: Int = 1, checkEvery: Int64 = 5, leave: LeaveSignal = LeaveSignal(), wake: @escaping @Sendable () -> Void = {}) -> ControlLane.Member {
        ControlLane.Member(engine: engine, speed: speed, checkEvery: checkEvery, leave: leave, wakePersistence: wake, left: {})
    }

    static func step(_ target: String, _ intensity: Int, _ seconds: Int) -> StepSpec {
        StepSpec(target: target, technique: target == "calf" ? "kneading" : "compression", intensity: intensity, durationSeconds: seconds)
    }
}
