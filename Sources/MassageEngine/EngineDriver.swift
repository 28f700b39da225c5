/// Runs an engine in real time: `speed` control ticks every tick period of
/// real time (`ContinuousClock`), and a persistence loop that hands pending
/// changes to storage off the control path. At speed N the engine runs N×
/// faster than real time with exactly the same physics and ramps (the same
/// ticks, just closer together); wall-clock schedules are not scaled.
///
/// The agent runs `run()` inside its swift-service-lifecycle `Service`.
public struct EngineDriver: Sendable {
    public let engine: MassageEngine
    /// Ticks per real tick period (1 = real time).
    public let speed: Int
    /// How often the persistence loop looks for pending changes (real time).
    public let persistenceInterval: Duration

    public init(engine: MassageEngine, speed: Int = 1, persistenceInterval: Duration = .milliseconds(100)) {
        self.engine = engine
        self.speed = max(1, speed)
        self.persistenceInterval = persistenceInterval
    }

    /// Ticks until the task is cancelled, then shuts the engine down (every
    /// actuator released at once, a running session aborted `shutdown`) and
    /// persists what is pending.
    public func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await persistenceLoop() }
            await tickLoop()
            group.cancelAll()
        }
        engine.shutdown()
        try? engine.flushPersistence()
    }

    private func tickLoop() async {
        let clock = ContinuousClock()
        let period = engine.controlTick
        var deadline = clock.now.advanced(by: period)
        while !Task.isCancelled {
            for _ in 0..<speed { engine.tick() }
            do {
                try await clock.sleep(until: deadline, tolerance: nil)
            } catch {
                return  // cancelled
            }
            deadline = deadline.advanced(by: period)
            let now = clock.now
            // Far behind (the process was stopped, the machine suspended):
            // carry on from now instead of bursting through missed ticks.
            if now - deadline > period * 5 { deadline = now.advanced(by: period) }
        }
    }

    private func persistenceLoop() async {
        var failures = 0
        while !Task.isCancelled {
            if engine.hasPendingPersistence {
                do {
                    try engine.flushPersistence()
                    failures = 0
                } catch {
                    failures += 1  // counted in telemetry; retried with backoff
                }
            }
            // Back off up to 32× the interval while storage keeps failing.
            let wait = persistenceInterval * (1 << min(failures, 5))
            do { try await Task.sleep(for: wait) } catch { return }
        }
    }
}
