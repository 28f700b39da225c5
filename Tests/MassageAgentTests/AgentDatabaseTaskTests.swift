import FleetProtocol
import FleetTestSupport
import Foundation
import GRDB
@testable import MassageAgent
import MassageEngine
import MassageEngineTesting
import Synchronization
import Testing

// The agent's tasks (MQTT, commands, the outbox publisher) share Swift's
// cooperative pool: as many threads as cores, two on a small board. A task
// that blocked one while SQLite wrote (and, at a checkpoint, fsynced the
// board's flash) held up every other task. These show that its database
// accesses from tasks are awaited instead, that the engine's blocking
// storage runs on a queue of its own, and that the order the outbox
// promises still holds when many tasks write at once.

@Suite("The agent's database from tasks (real SQLite)")
struct AgentDatabaseTaskTests {
    @Test("outbox writers waiting for SQLite's write lock hold no thread of the cooperative pool: with more of them than the pool has threads, another task still runs, and every entry lands in order",
          // Real time against SQLite's busy timeout, and a pool no other suite's blocking work fills:
          // deploy/test.sh runs it with the tests that run alone.
          .tags(.slow))
    func waitingWritersLeaveThePoolFree() async throws {
        let dir = try TemporaryDirectory(prefix: "outbox-pool")
        let path = dir.url.appendingPathComponent("agent.sqlite").path
        let outbox = Outbox(database: try AgentDatabase(path: path))
        // Another connection takes SQLite's write lock and holds it until the
        // probe below has run, or for 3 s at most (the agent's busy timeout
        // is 5 s, so its writers wait rather than fail).
        let lock = WriteLockHolder(path: path, holdAtMost: .seconds(3))
        try await lock.acquire()

        // Four times as many writers as the pool has threads: were a waiting
        // write to block its thread, the pool would be full of them.
        let writers = 4 * max(2, ProcessInfo.processInfo.activeProcessorCount)
        let progress = Progress()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<writers {
                group.addTask {
                    progress.started.add(1, ordering: .relaxed)
                    try await outbox.enqueue([
                        (topic: "w/\(w)", payload: Data("first".utf8), qos: 1, retain: false),
                        (topic: "w/\(w)", payload: Data("second".utf8), qos: 1, retain: false),
                    ])
                    progress.finished.add(1, ordering: .relaxed)
                }
            }
            // The probe: a task on the same pool, queued after the writers.
            group.addTask {
                let clock = ContinuousClock()
                let deadline = clock.now + .seconds(3)
                while progress.started.load(ordering: .relaxed) < writers, clock.now < deadline {
                    try await Task.sleep(for: .milliseconds(1))
                }
                lock.probeRan(writersStarted: progress.started.load(ordering: .relaxed),
                              writersFinished: progress.finished.load(ordering: .relaxed))
            }
            try await group.waitForAll()
        }

        let seen = try #require(lock.seen)
        #expect(seen.whileLocked, "the probe ran only after the write lock was released: the waiting writers held the pool")
        #expect(seen.writersStarted == writers, "every writer was waiting when the probe ran")
        #expect(seen.writersFinished == 0, "no write can finish while the lock is held")
        // None lost; each writer's two entries adjacent and in order.
        let entries = try await outbox.peek(limit: 10 * writers)
        #expect(entries.count == 2 * writers)
        for w in 0..<writers {
            let mine = entries.filter { $0.topic == "w/\(w)" }
            #expect(mine.map { String(decoding: $0.payload, as: UTF8.self) } == ["first", "second"])
            #expect(mine.count == 2 && mine[1].id == mine[0].id + 1, "writer \(w)'s batch was split: \(mine.map(\.id))")
        }
    }

    @Test("messages stamped by many tasks at once and by the engine's hand-off on its own queue reach the outbox in seq order, none lost")
    func seqOrderUnderConcurrentWriters() async throws {
        let dir = try TemporaryDirectory(prefix: "outbox-seq")
        let database = try AgentDatabase(path: dir.url.appendingPathComponent("agent.sqlite").path)
        let outbox = Outbox(database: database)
        let stamper = MessageStamper(epoch: 1)
        let events = "massage/v1/s/d/events"
        let storage = AgentEngineStorage(database: database, stamper: stamper, eventsTopic: events, outboxLimits: OutboxLimits(),
                                         onEventsStored: { _ in })
        let tasks = 8, perTask = 25, batches = 25
        try await withThrowingTaskGroup(of: Void.self) { group in
            for t in 0..<tasks {
                group.addTask {
                    for i in 0..<perTask {
                        let body = Event(type: .configApplied, configVersion: UInt64(t * perTask + i))
                        try await outbox.enqueue(topic: events, qos: 1, retain: false) { Data(try stamper.stamp(body)) }
                    }
                }
            }
            // The engine's flushes: blocking, from a queue of their own, as
            // EnginePersistence runs them; two events per batch.
            group.addTask {
                try await onQueue {
                    for b in 0..<batches {
                        let at = Date(timeIntervalSince1970: Double(b))
                        try storage.apply(PersistenceBatch(events: [
                            EngineEvent(time: at, sessionID: SessionID(rawValue: "s\(b)"), programID: nil, kind: .sessionPaused),
                            EngineEvent(time: at, sessionID: SessionID(rawValue: "s\(b)"), programID: nil, kind: .sessionResumed),
                        ]))
                    }
                }
            }
            try await group.waitForAll()
        }
        let total = tasks * perTask + 2 * batches
        let seqs = try await outbox.peek(limit: 2 * total).map { entry in
            try #require(try JSONSerialization.jsonObject(with: entry.payload) as? [String: Any])["seq"] as? Int ?? -1
        }
        #expect(seqs.count == total)
        #expect(seqs == Array(1...total), "the outbox order is not the seq order (first differences: \(zip(seqs, 1...total).filter { $0 != $1 }.prefix(5)))")
        #expect(stamper.last(.events) == UInt64(total))
    }

    @Test("the engine's flushes run on their own queue, outside any Swift task: the driver's persistence loop, a command's flush and the last one after cancellation")
    func engineFlushesLeaveThePool() async throws {
        let storage = WhereFlushesRun()
        let programs = try ProgramLibrary.load(directory: AgentProcess.repositoryRoot.appendingPathComponent("Config/programs"))
        let engine = try MassageEngine(programs: programs, hardware: SimulatedMassager(seed: 3), clock: ManualClock(), storage: storage)
        storage.applies.withLock { $0.removeAll() }  // MassageEngine.init's own flush, at start-up
        let persistence = EnginePersistence(engine: engine)
        let driver = EngineDriver(engine: engine, persistenceInterval: .milliseconds(10), realtimePriority: nil, persistence: persistence)
        let run = Task { await driver.run() }
        try engine.start(.steps([StepSpec(target: "calf", technique: "kneading", intensity: 3, durationSeconds: 600)]))
        try await waitUntil(timeout: .seconds(60), pollEvery: .milliseconds(5), "the persistence loop stored the running session") {
            storage.inner.persisted.activeSession != nil
        }
        // A command that needs its change durable before it replies.
        _ = try engine.schedule(.program("calf-release"), at: Date().addingTimeInterval(3600))
        try await persistence.flush()
        #expect(storage.inner.persisted.schedules.count == 1)
        run.cancel()
        await run.value
        #expect(storage.inner.persisted.activeSession == nil, "the last flush, after cancellation, stored the session's end")
        let applies = storage.applies.withLock { $0 }
        #expect(applies.count >= 3)
        #expect(applies.allSatisfy { !$0 }, "a flush ran inside a Swift task (on the cooperative pool): \(applies)")
    }
}

/// Counters shared by the writers and the probe.
private final class Progress: Sendable {
    let started = Atomic<Int>(0)
    let finished = Atomic<Int>(0)
}

/// Holds SQLite's write lock on a database from a connection of its own, on
/// a thread of its own, until `probeRan` is called or `holdAtMost` passes.
private final class WriteLockHolder: Sendable {
    struct Seen: Sendable {
        /// The lock was still held when the probe ran.
        var whileLocked: Bool
        var writersStarted: Int
        var writersFinished: Int
    }

    private struct State {
        var released = false
        var seen: Seen?
    }

    let path: String
    let holdAtMost: Duration
    private let probe = DispatchSemaphore(value: 0)
    // Synchronization's by name here and below: in ThreadSanitizer builds
    // MassageAgent has a `Mutex` of its own, which `@testable` makes visible.
    private let state = Synchronization.Mutex(State())

    init(path: String, holdAtMost: Duration) {
        self.path = path
        self.holdAtMost = holdAtMost
    }

    /// What the probe saw (nil if it never ran).
    var seen: Seen? { state.withLock { $0.seen } }

    /// Returns once the lock is taken (BEGIN IMMEDIATE).
    func acquire() async throws {
        let (seconds, attoseconds) = holdAtMost.components
        let hold = DispatchTimeInterval.milliseconds(Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000))
        try await withCheckedThrowingContinuation { (locked: CheckedContinuation<Void, any Error>) in
            Thread { [self] in
                var resumed = false
                do {
                    let connection = try DatabaseQueue(path: path)
                    try connection.inTransaction(.immediate) { _ in
                        locked.resume()
                        resumed = true
                        _ = probe.wait(timeout: .now() + hold)
                        // Marked before the rollback lets the writers through.
                        state.withLock { $0.released = true }
                        return .rollback
                    }
                } catch {
                    if !resumed { locked.resume(throwing: error) }
                }
            }.start()
        }
    }

    func probeRan(writersStarted: Int, writersFinished: Int) {
        state.withLock { s in
            s.seen = Seen(whileLocked: !s.released, writersStarted: writersStarted, writersFinished: writersFinished)
        }
        probe.signal()
    }
}

/// Runs blocking work on a dispatch queue and awaits it.
private func onQueue(_ work: @escaping @Sendable () throws -> Void) async throws {
    try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, any Error>) in
        DispatchQueue(label: "test.engine-flushes").async { done.resume(with: Result { try work() }) }
    }
}

/// In-memory engine storage that notes, for every batch, whether it is
/// applied inside a Swift task (on the cooperative pool).
private final class WhereFlushesRun: EngineStorage {
    let inner = InMemoryEngineStorage()
    let applies = Synchronization.Mutex<[Bool]>([])

    func load() throws -> PersistedState { try inner.load() }

    func apply(_ batch: PersistenceBatch) throws {
        applies.withLock { $0.append(withUnsafeCurrentTask { $0 != nil }) }
        try inner.apply(batch)
    }
}
