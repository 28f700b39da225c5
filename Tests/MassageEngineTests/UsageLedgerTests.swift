import Foundation
import MassageEngine
import MassageEngineTesting
import Synchronization
import Testing

@Suite("Usage ledger and persistence")
struct UsageLedgerTests {
    @Test("usage counters are exact after a simulated restart")
    func exactAfterRestart() throws {
        let h = try Harness()
        // One completed session, one stopped remotely, one ended by the pain button.
        try h.engine.start(.program("calf-release"))
        h.runUntilIdle()
        try h.engine.start(.steps([step("thigh", "kneading", 5, 120), step("gb34", "compression", 2, 30)]))
        h.run(seconds: 60)
        try h.engine.stop()
        h.runUntilIdle()
        try h.engine.start(.steps([step("gb34", "compression", 2, 30), step("gb34", "circular", 4, 60)]))
        h.run(seconds: 40)
        h.simulator.inject(.painButton)
        h.tick()
        h.simulator.clear(.painButton)
        try h.engine.flushPersistence()

        let before = h.engine.usage()
        let after = try h.restarted()
        let restored = after.engine.usage()
        #expect(restored == before)

        #expect(restored.sessionsStarted == 3)
        #expect(restored.sessionsCompleted == 1)
        #expect(restored.aborted(.remoteStop) == 1)
        #expect(restored.aborted(.painSignal) == 1)
        #expect(restored.aborted(.interrupted) == 0)
        #expect(restored.sessionsAborted.count == AbortReason.allCases.count)
        // calf-release: 690 s on sp6 (calf). Second: 60 s thigh kneading. Third: 30 s calibration + 10 s circular on gb34 (shin).
        #expect(restored.milliseconds.byProgram == ["calf-release": 690_000, "custom": 100_000])
        #expect(restored.milliseconds.byZone == ["calf": 690_000, "thigh": 60_000, "shin": 40_000])
        #expect(restored.milliseconds.byPoint == ["sp6": 690_000, "gb34": 40_000])
        #expect(restored.milliseconds.byTechnique == ["compression": 60_000, "kneading": 420_000, "rolling": 300_000, "circular": 10_000])
        #expect(restored.secondsByZone["calf"] == 690)
    }

    @Test("a session interrupted by a crash is counted once as interrupted and never resumed")
    func interruptedOnce() throws {
        let h = try Harness()
        let id = try h.engine.start(.program("full-leg-circulation"))
        h.run(seconds: 12.5)  // checkpoints every 5 s: 10 s of massage persisted
        try h.engine.flushPersistence()
        #expect(h.storage.persisted.activeSession?.sessionID == id)
        // The process dies here: no stop, no shutdown.

        let first = try h.restarted()
        #expect(first.journal.types == ["session_aborted"])
        #expect(first.journal.events.first?.abortReason == .interrupted)
        #expect(first.journal.events.first?.sessionID == id)
        #expect(first.journal.events.first?.programID == "full-leg-circulation")
        #expect(first.engine.telemetry().state == .idle)
        #expect(first.storage.persisted.activeSession == nil)
        first.run(seconds: 60)
        #expect(first.engine.telemetry().state == .idle, "never resumed")

        let second = try first.restarted()
        #expect(second.journal.events.isEmpty)
        let usage = second.engine.usage()
        #expect(usage.sessionsStarted == 1)
        #expect(usage.aborted(.interrupted) == 1)
        #expect(usage.milliseconds.byProgram["full-leg-circulation"] == 10_000)
        #expect(usage.milliseconds.byZone["thigh"] == 10_000)
    }

    @Test("a crash between taking and writing a batch counts nothing twice")
    func crashDuringRecovery() throws {
        let storage = InMemoryEngineStorage()
        let h = try Harness(storage: storage)
        try h.engine.start(.program("sole-vitality"))
        h.run(seconds: 6)
        try h.engine.flushPersistence()
        // The restarted engine's first write fails (power lost again): it refuses to start.
        storage.failNextApplies(1)
        #expect(throws: InjectedStorageFailure.self) { _ = try h.restarted() }
        // The next start recovers it, once.
        let again = try h.restarted()
        let usage = again.engine.usage()
        #expect(usage.aborted(.interrupted) == 1)
        #expect(usage.milliseconds.byProgram["sole-vitality"] == 5_000)
        #expect(try h.restarted().engine.usage() == usage)
    }

    @Test("the control tick never calls storage")
    func tickNeverTouchesStorage() throws {
        let storage = InMemoryEngineStorage()
        let h = try Harness(storage: storage)
        let applies = storage.applyCount
        let loads = storage.loadCount
        try h.engine.start(.program("calf-release"))
        h.runUntilIdle()
        #expect(storage.applyCount == applies)
        #expect(storage.loadCount == loads)
        #expect(h.engine.hasPendingPersistence)
        try h.engine.flushPersistence()
        #expect(storage.applyCount == applies + 1)
        #expect(!h.engine.hasPendingPersistence)
        #expect(storage.persisted.usage == h.engine.usage())
    }

    @Test("a failed write stays pending and is retried without loss")
    func failedWriteRetried() throws {
        let storage = InMemoryEngineStorage()
        let h = try Harness(storage: storage)
        try h.engine.start(.steps([step("arch", "shiatsu", 4, 30)]))
        h.run(seconds: 10)
        storage.failNextApplies(1)
        #expect(throws: InjectedStorageFailure.self) { try h.engine.flushPersistence() }
        #expect(h.engine.telemetry().persistenceFailures == 1)
        h.runUntilIdle()
        try h.engine.flushPersistence()
        #expect(storage.persisted.usage.sessionsStarted == 1)
        #expect(storage.persisted.usage.sessionsCompleted == 1)
        #expect(storage.persisted.usage.milliseconds.byZone == ["arch": 30_000])
        #expect(storage.persisted.activeSession == nil)
    }

    @Test("the JSON file storage keeps state across instances")
    func jsonFileStorage() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("engine-\(UUID().uuidString)/state.json")
        defer { try? FileManager.default.removeItem(at: url.deletingLastPathComponent()) }
        let clock = ManualClock()
        let library = try Harness.builtIns()
        let first = try MassageEngine(programs: library, hardware: SimulatedMassager(seed: 1), clock: clock, storage: JSONFileEngineStorage(fileURL: url))
        let booked = try first.schedule(.program("calf-release"), at: clock.now().addingTimeInterval(3600))
        try first.start(.steps([step("calf", "compression", 3, 2)]))
        first.tick(count: 200)
        try first.flushPersistence()

        let second = try MassageEngine(programs: library, hardware: SimulatedMassager(seed: 1), clock: clock, storage: JSONFileEngineStorage(fileURL: url))
        #expect(second.usage() == first.usage())
        #expect(second.schedules().map(\.id) == [booked.id])
        #expect(second.schedules().first?.at == booked.at)
        let text = try String(contentsOf: url, encoding: .utf8)
        #expect(text.contains("\"sessions_completed\" : 1"))
    }

    @Test("commands from another task while the engine ticks are safe")
    func concurrentCommands() async throws {
        let h = try Harness()
        let engine = h.engine
        let ticker = Task.detached {
            for _ in 0..<20_000 { engine.tick() }
        }
        var started = 0
        for _ in 0..<200 {
            if (try? engine.start(.steps([step("calf", "compression", 3, 1)]))) != nil { started += 1 }
            _ = engine.telemetry()
            try? engine.adjustIntensity(4)
            try? engine.stop()
            await Task.yield()
        }
        await ticker.value
        engine.tick(count: 200)
        let usage = engine.usage()
        #expect(usage.sessionsStarted == started)
        #expect(usage.sessionsCompleted + usage.sessionsAbortedTotal == started)
    }
}

@Suite("One truth for ledger, events and schedules")
struct LedgerTruthTests {
    @Test("usage published from the durable ledger never goes backwards after a crash")
    func durableUsageNeverDecreases() throws {
        let h = try Harness()
        try h.engine.start(.program("calf-release"))
        h.run(seconds: 7)  // one checkpoint at 5 s
        try h.engine.flushPersistence()
        h.run(seconds: 3)
        let live = h.engine.usage().milliseconds.byZone["calf"] ?? 0
        let published = h.engine.durableUsage().milliseconds.byZone["calf"] ?? 0
        #expect(live == 10_000)
        #expect(published == 5_000, "only what a restart would count")
        // Crash now: the restart counts from storage.
        let after = try h.restarted()
        let restored = after.engine.usage().milliseconds.byZone["calf"] ?? 0
        #expect(restored >= published)
        #expect(after.engine.durableUsage().milliseconds.byZone["calf"] ?? 0 >= published)
    }

    @Test("with a storage that keeps events, a session's end, its ledger count and its marker's removal are in one batch, and every event is stored once, in order")
    func endAndLedgerTogether() throws {
        let storage = EventKeepingStorage()
        let clock = ManualClock()
        let journal = Journal()
        let engine = try MassageEngine(programs: try Harness.builtIns(), hardware: SimulatedMassager(seed: 3), clock: clock, storage: storage,
                                       eventObserver: { journal.record(.event($0)) })
        try engine.start(.program("sole-vitality"))
        for tick in 1...40_000 {
            clock.advance(by: 0.02)
            engine.tick()
            if tick % 37 == 0 { try engine.flushPersistence() }
            if engine.telemetry().state == .idle { break }
        }
        try engine.flushPersistence()
        let batches = storage.batches.withLock { $0 }
        let ending = try #require(batches.first { $0.events.contains { $0.kind == .sessionCompleted } })
        #expect(ending.usage?.sessionsCompleted == 1)
        #expect(ending.activeSession == .clear)
        #expect(batches.flatMap(\.events) == journal.events)
    }
}

/// Storage that keeps events (as the agent's does) and records every batch.
private final class EventKeepingStorage: EngineStorage {
    let batches = Mutex<[PersistenceBatch]>([])
    var persistsEvents: Bool { true }
    func load() throws -> PersistedState { PersistedState() }
    func apply(_ batch: PersistenceBatch) throws { batches.withLock { $0.append(batch) } }
}
