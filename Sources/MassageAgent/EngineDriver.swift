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
/// The control loop runs on a thread of its own, sleeping with
/// `clock_nanosleep` to absolute deadlines on the monotonic clock, not on
/// Swift's cooperative pool: a pool kept busy by other work (a burst of
/// commands, SQLite, a flood of bad payloads) cannot delay a tick, so a pain
/// signal is still released within one control tick; and one thread waking
/// 50 times a second costs a fraction of a timer on the global executor
/// (a dispatch manager thread, then a pool thread, every tick).
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
    /// `SCHED_FIFO` priority (1–99) for the control thread, or nil to stay
    /// on the default scheduler. A massager gives its control loop a
    /// real-time priority so that no other process on the board can delay a
    /// tick; it needs CAP_SYS_NICE (root, or the systemd unit's
    /// `AmbientCapabilities=CAP_SYS_NICE`). See `realtimeResult`.
    public let realtimePriority: Int32?
    /// What asking for the real-time priority gave: 0 when granted, the
    /// errno otherwise (EPERM without the capability); -1 until the control
    /// thread has started or when none was asked for.
    public var realtimeResult: Int32 { realtimeStatus.value.load(ordering: .acquiring) }
    private let realtimeStatus = AtomicBox(-1)

    /// - Parameter persistence: the queue the flushes run on; share the
    ///   host's when it flushes too (the agent does, after some commands).
    public init(engine: MassageEngine, speed: Int = 1, persistenceInterval: Duration = .milliseconds(100), realtimePriority: Int32? = nil,
                persistence: EnginePersistence? = nil) {
        self.engine = engine
        self.speed = max(1, speed)
        self.persistenceInterval = persistenceInterval
        self.persistence = persistence ?? EnginePersistence(engine: engine)
        self.realtimePriority = realtimePriority.map { min(99, max(1, $0)) }
    }

    /// Ticks until the task is cancelled, then shuts the engine down (every
    /// actuator released at once, a running session aborted `shutdown`) and
    /// persists what is pending. The control thread stops within one tick
    /// period of the cancellation.
    public func run() async {
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        await withDiscardingTaskGroup { group in
            group.addTask { await persistenceLoop(wakeups) }
            await runControlThread(wakePersistence: { wake.yield() })
            group.cancelAll()
        }
        wake.finish()
        engine.shutdown()
        try? await persistence.flush()
    }

    /// Starts the control thread and returns when it has stopped.
    private func runControlThread(wakePersistence: @escaping @Sendable () -> Void) async {
        let stop = StopFlag()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                Thread {
                    // Named for `top -H` and `perf` (at most 15 characters),
                    // in the kernel: Foundation's `Thread.name` on Linux has
                    // reported another thread's name for this one now and then.
                    ThreadName.set("engine-control")
                    if let priority = realtimePriority {
                        var parameters = sched_param(sched_priority: priority)
                        realtimeStatus.value.store(pthread_setschedparam(pthread_self(), SCHED_FIFO, &parameters), ordering: .releasing)
                    }
                    controlLoop(stop: stop, wakePersistence: wakePersistence)
                    done.resume()
                }.start()
            }
        } onCancel: {
            stop.requested.store(true, ordering: .releasing)
        }
    }

    /// The control loop proper: `speed` ticks, then sleep to the next
    /// deadline. Every `persistenceInterval` it wakes the persistence loop
    /// when changes are pending, so an idle engine costs no other wake-ups.
    ///
    /// The loop is watched: a wake-up a whole period or more after its
    /// deadline (the thread was not scheduled, a tick took too long) is
    /// reported to the engine, which counts it and, past
    /// `HardLimits.controlOverrunTicks` with pressure on, releases everything
    /// and aborts `control_overrun`. Far behind, it carries on from now
    /// instead of bursting through the missed ticks.
    private func controlLoop(stop: StopFlag, wakePersistence: @Sendable () -> Void) {
        let period = Monotonic.nanoseconds(engine.controlTick)
        let checkEvery = max(1, Monotonic.nanoseconds(persistenceInterval) / max(1, period))
        var deadline = Monotonic.now() + period
        var periods: Int64 = 0
        while !stop.requested.load(ordering: .acquiring) {
            for _ in 0..<speed { engine.tick() }
            periods &+= 1
            if periods % checkEvery == 0, engine.hasPendingPersistence { wakePersistence() }
            Monotonic.sleep(until: deadline)
            let woke = Monotonic.now()
            if woke - deadline >= period { engine.controlLoopLate(milliseconds: Double(woke - deadline) / 1e6) }
            deadline += period
            if woke - deadline > period * Int64(HardLimits.controlOverrunTicks) { deadline = woke + period }
        }
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

/// Set once by the task that cancels the driver; read by the control thread.
private final class StopFlag: Sendable {
    let requested = Atomic<Bool>(false)
}

/// An atomic shared by the driver's copies (the driver is a struct).
final class AtomicBox: Sendable {
    let value: Atomic<Int32>
    init(_ initial: Int32) { value = Atomic(initial) }
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

/// `CLOCK_MONOTONIC` in nanoseconds, and an absolute sleep on it that
/// resumes after signals.
private enum Monotonic {
    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    static func sleep(until deadline: Int64) {
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nil) == EINTR {}
    }
}
