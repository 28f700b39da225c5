import Foundation
import Glibc
import MassageEngine
import Synchronization

/// Runs an engine in real time: `speed` control ticks every tick period of
/// real time, and a persistence loop that hands pending changes to storage
/// off the control path (and off the cooperative pool: the flushes run on
/// `persistence`'s queue). At speed N the engine runs N× faster than real time
/// with exactly the same physics and ramps (the same ticks, just closer
/// together); wall-clock schedules are not scaled.
///
/// The control loop runs on a thread of a `ControlLoopGroup`, sleeping with
/// `clock_nanosleep` to absolute deadlines on the monotonic clock, not on
/// Swift's cooperative pool: a pool kept busy by other work (a burst of
/// commands, SQLite, a flood of bad payloads) cannot delay a tick, so a pain
/// signal is still released within one control tick; and one thread waking
/// 50 times a second costs a fraction of a timer on the global executor
/// (a dispatch manager thread, then a pool thread, every tick). A massager's
/// agent gets a group of its own (one thread, its real-time priority); a
/// process running many engines (`fleet-sim`) passes one shared group, so a
/// thousand engines cost a couple of threads, not a thousand
/// (ControlLoopGroup.swift says what the loop guarantees for each engine).
///
/// The agent runs `run()` inside its swift-service-lifecycle `Service`
/// (`AgentService`); the driver lives with it, in the agent library, so the
/// engine stays a synchronous state machine without threads or clocks of
/// its own.
public struct EngineDriver: Sendable {
    public let engine: MassageEngine
    /// Ticks per real tick period (1 = real time).
    public let speed: Int
    /// How often the control thread looks for pending changes and wakes the
    /// persistence loop (real time).
    public let persistenceInterval: Duration
    /// Where the flushes run (a dispatch queue of their own).
    public let persistence: EnginePersistence
    /// The control thread(s) that tick the engine.
    public let controlGroup: ControlLoopGroup
    /// `SCHED_FIFO` priority (1–99) of the control thread, or nil for the
    /// default scheduler. A massager gives its control loop a real-time
    /// priority so that no other process on the board can delay a tick; it
    /// needs CAP_SYS_NICE (root, or the systemd unit's
    /// `AmbientCapabilities=CAP_SYS_NICE`). See `realtimeResult`.
    public var realtimePriority: Int32? { controlGroup.realtimePriority }
    /// What asking for the real-time priority gave: 0 when granted, the
    /// errno otherwise (EPERM without the capability); -1 until the control
    /// thread has started or when none was asked for.
    public var realtimeResult: Int32 { controlGroup.realtimeResult }

    /// - Parameters:
    ///   - realtimePriority: for the driver's own control thread; ignored
    ///     when `controlGroup` is given (the group's priority holds).
    ///   - persistence: the queue the flushes run on; share the host's when
    ///     it flushes too (the agent does, after some commands).
    ///   - controlGroup: the control threads to share with other engines of
    ///     the process; nil for a thread of the driver's own.
    public init(engine: MassageEngine, speed: Int = 1, persistenceInterval: Duration = .milliseconds(100), realtimePriority: Int32? = nil,
                persistence: EnginePersistence? = nil, controlGroup: ControlLoopGroup? = nil) {
        self.engine = engine
        self.speed = max(1, speed)
        self.persistenceInterval = persistenceInterval
        self.persistence = persistence ?? EnginePersistence(engine: engine)
        self.controlGroup = controlGroup ?? ControlLoopGroup(threads: 1, period: engine.controlTick, realtimePriority: realtimePriority)
    }

    /// Ticks until the task is cancelled, then shuts the engine down (every
    /// actuator released at once, a running session aborted `shutdown`) and
    /// persists what is pending. The control thread stops ticking the
    /// engine within one tick period of the cancellation, before the
    /// shutdown.
    public func run() async {
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        await withDiscardingTaskGroup { group in
            group.addTask { await persistenceLoop(wakeups) }
            await controlGroup.run(engine, speed: speed, persistenceInterval: persistenceInterval, wakePersistence: { wake.yield() })
            group.cancelAll()
        }
        wake.finish()
        engine.shutdown()
        try? await persistence.flush()
    }

    /// Flushes when woken; while storage keeps failing, retries with a
    /// backoff of up to 32× the interval (failures show in telemetry). Each
    /// flush runs on `persistence`'s queue: this task only awaits it.
    private func persistenceLoop(_ wakeups: AsyncStream<Void>) async {
        var failures = 0
        for await _ in wakeups {
            while engine.hasPendingPersistence, !Task.isCancelled {
                do {
                    try await persistence.flush()
                    failures = 0
                } catch {
                    failures += 1
                    let wait = persistenceInterval * (1 << min(failures, 5))
                    do { try await Task.sleep(for: wait) } catch { return }
                }
            }
        }
    }
}

/// The kernel's name of the calling thread (`/proc/thread-self/comm`, what
/// `top -H`, `perf` and `ps -L` show; at most 15 bytes).
package enum ThreadName {
    package static func set(_ name: String) {
        let fd = open("/proc/thread-self/comm", O_WRONLY)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let bytes = Array(name.utf8.prefix(15))
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    package static func current() -> String {
        let fd = open("/proc/thread-self/comm", O_RDONLY)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return "" }
        return String(decoding: buffer[..<count].prefix { $0 != 10 }, as: UTF8.self)
    }
}
