import Foundation
import MassageEngine
import Synchronization
import Testing

@Suite("Live driver")
struct EngineDriverTests {
    /// Waits for `condition` with a deadline (real time), polling.
    func waitUntil(deadline seconds: Double, _ condition: () -> Bool) async -> Bool {
        let clock = ContinuousClock()
        let end = clock.now.advanced(by: .milliseconds(Int(seconds * 1000)))
        while clock.now < end {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(5)) // poll until the deadline
        }
        return condition()
    }

    @Test("at speed N the driver runs N ticks per real tick, with the same physics")
    func speedFactor() async throws {
        let h = try Harness()
        // 20 s of engine time; at speed 200 it takes about 0.1 s of real time.
        try h.engine.start(.steps([step("calf", "kneading", 5, 20)]))
        let driver = EngineDriver(engine: h.engine, speed: 200)
        let started = ContinuousClock.now
        let run = Task { await driver.run() }
        let finished = await waitUntil(deadline: 60) { h.journal.types.contains("session_completed") }
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
        let h = try Harness()
        try h.engine.start(.program("calf-release"))
        let run = Task { await EngineDriver(engine: h.engine, speed: 10).run() }
        #expect(await waitUntil(deadline: 60) { h.engine.tickCount > 100 })
        run.cancel()
        await run.value
        #expect(h.simulator.snapshot().released)
        #expect(h.journal.abortReasons == [.shutdown])
        // The persistence loop and the final flush wrote the outcome.
        #expect(h.storage.persisted.usage.aborted(.shutdown) == 1)
        #expect(h.storage.persisted.activeSession == nil)
    }

    @Test("the persistence loop writes changes while the driver ticks")
    func persistenceLoop() async throws {
        let h = try Harness()
        let run = Task { await EngineDriver(engine: h.engine, speed: 50, persistenceInterval: .milliseconds(10)).run() }
        try h.engine.start(.steps([step("thigh", "compression", 3, 60)]))
        #expect(await waitUntil(deadline: 60) { h.storage.persisted.activeSession != nil })
        run.cancel()
        await run.value
    }

    @Test("the control loop keeps ticking while every thread of the cooperative pool is blocked")
    func controlLoopOutsideThePool() async throws {
        let h = try Harness()
        let run = Task { await EngineDriver(engine: h.engine).run() }
        #expect(await waitUntil(deadline: 60) { h.engine.tickCount > 0 })
        // As many blocking tasks as the pool has threads (on Linux, one per
        // core). Each blocks its thread until all of them run, so the whole
        // pool is blocked at once (in the parallel suite other tests' work
        // may hold a thread for a while first), then counts the ticks over
        // 400 ms of that blockade. A driver on the pool would see none.
        let width = ProcessInfo.processInfo.activeProcessorCount
        let arrived = Counter()
        let engine = h.engine
        let observed = await withTaskGroup(of: (together: Bool, ticks: UInt64).self) { group in
            for _ in 0..<width {
                group.addTask {
                    arrived.value.add(1, ordering: .relaxed)
                    let clock = ContinuousClock()
                    let give = clock.now.advanced(by: .seconds(60))
                    while arrived.value.load(ordering: .relaxed) < width, clock.now < give {
                        usleep(1_000)  // blocks this pool thread, not just the task, until every blocker runs
                    }
                    let together = arrived.value.load(ordering: .relaxed) == width
                    let before = engine.tickCount
                    let until = clock.now.advanced(by: .milliseconds(400))
                    while clock.now < until {
                        usleep(5_000)  // blocks this pool thread, not just the task, until the blockade's deadline
                    }
                    return (together, engine.tickCount - before)
                }
            }
            return await group.reduce(into: [(together: Bool, ticks: UInt64)]()) { $0.append($1) }
        }
        run.cancel()
        await run.value
        #expect(observed.allSatisfy { $0.together }, "the blockers never all ran at once")
        // 400 ms at 50 Hz is 20 ticks; a loaded machine may delay some.
        let least = observed.map { $0.ticks }.min() ?? 0
        #expect(least >= 5, "ticks seen by each blocker during a 400 ms blockade of the pool: \(observed.map(\.ticks))")
    }
}

/// Counts blockers in; shared by tasks on different threads.
private final class Counter: Sendable {
    let value = Atomic<Int>(0)
}
