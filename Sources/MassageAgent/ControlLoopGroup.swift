import Glibc
import MassageEngine
import Synchronization

/// The control threads that tick engines in real time: one thread by
/// default (a massager's agent has one engine and gets a group of its own
/// from `EngineDriver`), or a small fixed number shared by every engine of a
/// process (`fleet-sim` runs a thousand agents in one process: a thousand
/// threads waking 50 times a second each cost the machine more than the
/// ticks themselves — issue 23).
///
/// Each thread (a *lane*) sleeps with `clock_nanosleep` to absolute
/// deadlines on the monotonic clock, off Swift's cooperative pool, and every
/// period ticks each of its engines `speed` times, in the order they joined.
/// The safety properties of the loop are the same for one engine or many,
/// and are kept per engine (`ControlLane.runPeriod`):
/// - every engine is ticked once per period (the pain button is read, and
///   acted on, within one tick);
/// - the loop is watched *per engine*: an engine whose ticks start a whole
///   period or more after the period's deadline (the thread was not
///   scheduled, or the engines before it took too long) is told how late
///   (`MassageEngine.controlLoopLate`), which past
///   `HardLimits.controlOverrunTicks` with pressure on releases and aborts
///   `control_overrun`. A lane given more engines than it can tick in a
///   period therefore aborts their sessions; it never silently slows them;
/// - far behind, the lane carries on from now instead of bursting through
///   the missed ticks;
/// - every `persistenceInterval` an engine with pending changes wakes its
///   persistence loop; nothing here flushes.
///
/// A lane's thread starts when its first engine joins and ends when its last
/// has left, so the group needs no service of its own.
public final class ControlLoopGroup: Sendable {
    /// The tick period of every engine in the group (engine time = real time
    /// at speed 1).
    public let period: Duration
    /// `SCHED_FIFO` priority (1–99) for the threads, or nil.
    public let realtimePriority: Int32?
    private let lanes: [LaneThread]

    /// - Parameters:
    ///   - threads: how many control threads share the engines (at least 1).
    ///     Engines join the lane with the fewest.
    ///   - period: the engines' control tick; every engine that joins must
    ///     have this one.
    public init(threads: Int = 1, period: Duration = EngineConfiguration().controlTick, realtimePriority: Int32? = nil) {
        self.period = period
        self.realtimePriority = realtimePriority.map { min(99, max(1, $0)) }
        let priority = self.realtimePriority
        lanes = (0..<max(1, threads)).map { _ in LaneThread(period: Monotonic.nanoseconds(period), realtimePriority: priority) }
    }

    /// What asking for the real-time priority gave the last thread that
    /// started: 0 when granted, the errno otherwise; -1 until a thread has
    /// started or when none was asked for.
    public var realtimeResult: Int32 { lanes.map { $0.realtimeStatus.load(ordering: .acquiring) }.max() ?? -1 }

    /// How many engines are ticked now, summed over the lanes.
    public var engineCount: Int { lanes.reduce(0) { $0 + $1.count } }

    /// Ticks `engine` `speed` times a period until the task is cancelled;
    /// returns once its lane has stopped ticking it (after at most one more
    /// period), so the caller may shut the engine down without racing a tick.
    func run(_ engine: MassageEngine, speed: Int, persistenceInterval: Duration, wakePersistence: @escaping @Sendable () -> Void) async {
        precondition(engine.controlTick == period, "an engine with a \(engine.controlTick) tick cannot join a control loop group of \(period)")
        let checkEvery = max(1, Monotonic.nanoseconds(persistenceInterval) / max(1, Monotonic.nanoseconds(period)))
        let lane = lanes.min { $0.count < $1.count }!
        let leave = LeaveSignal()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                lane.join(ControlLane.Member(engine: engine, speed: max(1, speed), checkEvery: checkEvery, leave: leave,
                                             wakePersistence: wakePersistence, left: { done.resume() }))
            }
        } onCancel: {
            leave.request()
        }
    }
}

/// Set by whoever stops a member's ticking (its driver's cancellation, a
/// test); read by the lane at each period.
final class LeaveSignal: Sendable {
    private let requested = Atomic<Bool>(false)
    init() {}
    func request() { requested.store(true, ordering: .releasing) }
    var isRequested: Bool { requested.load(ordering: .acquiring) }
}

/// One control thread's engines and the rule of one period, pure of
/// threads and clocks: the thread (`LaneThread`) sleeps to the deadline and
/// calls `runPeriod`; tests call it with a time source of their own.
struct ControlLane {
    /// An engine in a lane. Once its `leave` signal is requested (from any
    /// thread) the lane removes the member at its next period, before
    /// ticking it, and then calls `left`.
    final class Member: Sendable {
        let engine: MassageEngine
        let speed: Int
        /// Persistence is looked at every `checkEvery` periods.
        let checkEvery: Int64
        let leave: LeaveSignal
        let wakePersistence: @Sendable () -> Void
        let left: @Sendable () -> Void

        init(engine: MassageEngine, speed: Int, checkEvery: Int64, leave: LeaveSignal,
             wakePersistence: @escaping @Sendable () -> Void, left: @escaping @Sendable () -> Void) {
            self.engine = engine
            self.speed = speed
            self.checkEvery = checkEvery
            self.leave = leave
            self.wakePersistence = wakePersistence
            self.left = left
        }
    }

    private struct Entry {
        let member: Member
        var periods: Int64 = 0
    }

    /// Nanoseconds between deadlines.
    let period: Int64
    private var entries: [Entry] = []

    init(period: Int64) { self.period = period }

    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }

    mutating func add(_ member: Member) { entries.append(Entry(member: member)) }

    /// One period, run once `deadline` has passed: drops the members that
    /// leave (returned, for the caller to tell them outside any lock), then
    /// for each other member in turn reads `now()`, reports to its engine
    /// when its ticks start a period or more after `deadline`, ticks it
    /// `speed` times, and every `checkEvery` periods wakes its persistence
    /// loop if changes are pending.
    mutating func runPeriod(deadline: Int64, now: () -> Int64) -> [Member] {
        var gone: [Member] = []
        entries.removeAll { entry in
            guard entry.member.leave.isRequested else { return false }
            gone.append(entry.member)
            return true
        }
        for index in entries.indices {
            let member = entries[index].member
            let late = now() - deadline
            if late >= period { member.engine.controlLoopLate(milliseconds: Double(late) / 1e6) }
            for _ in 0..<member.speed { member.engine.tick() }
            entries[index].periods &+= 1
            if entries[index].periods % member.checkEvery == 0, member.engine.hasPendingPersistence { member.wakePersistence() }
        }
        return gone
    }

    /// The deadline after `deadline`, given when the period's work began:
    /// one period on, or, when the loop has fallen more than
    /// `HardLimits.controlOverrunTicks` periods behind, one period after
    /// `woke` (no burst through the missed ticks).
    func nextDeadline(after deadline: Int64, woke: Int64) -> Int64 {
        let next = deadline + period
        return woke - next > period * Int64(HardLimits.controlOverrunTicks) ? woke + period : next
    }
}

/// The thread of one lane: started by the first join, ended when the lane
/// is empty. New members wait in `inbox` (the only state shared with other
/// threads) until the thread's next period; the lane itself is a local of
/// the thread.
private final class LaneThread: Sendable {
    let period: Int64
    let realtimePriority: Int32?
    let realtimeStatus = Atomic<Int32>(-1)
    private let members = Atomic<Int>(0)
    private let inbox = Mutex<(joining: [ControlLane.Member], running: Bool)>(([], false))

    init(period: Int64, realtimePriority: Int32?) {
        self.period = period
        self.realtimePriority = realtimePriority
    }

    var count: Int { members.load(ordering: .relaxed) }

    func join(_ member: ControlLane.Member) {
        members.add(1, ordering: .relaxed)
        let start = inbox.withLock { state -> Bool in
            state.joining.append(member)
            defer { state.running = true }
            return !state.running
        }
        guard start else { return }
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        var thread = pthread_t()
        let box = Unmanaged.passRetained(self).toOpaque()
        let created = pthread_create(&thread, &attributes, { raw in
            let lane = Unmanaged<LaneThread>.fromOpaque(raw!).takeRetainedValue()
            lane.loop()
            return nil
        }, box)
        precondition(created == 0, "could not start an engine control thread (errno \(created))")
        pthread_detach(thread)
    }

    private func loop() {
        // Named for `top -H` and `perf` (at most 15 characters), in the kernel.
        ThreadName.set("engine-control")
        if let priority = realtimePriority {
            var parameters = sched_param(sched_priority: priority)
            realtimeStatus.store(pthread_setschedparam(pthread_self(), SCHED_FIFO, &parameters), ordering: .releasing)
        }
        var lane = ControlLane(period: period)
        var deadline = Monotonic.now() + period
        while true {
            let more = inbox.withLock { state -> [ControlLane.Member]? in
                if lane.isEmpty, state.joining.isEmpty {
                    state.running = false
                    return nil
                }
                defer { state.joining.removeAll() }
                return state.joining
            }
            guard let more else { return }
            for member in more { lane.add(member) }
            Monotonic.sleep(until: deadline)
            let woke = Monotonic.now()
            let gone = lane.runPeriod(deadline: deadline, now: Monotonic.now)
            for member in gone {
                members.subtract(1, ordering: .relaxed)
                member.left()
            }
            deadline = lane.nextDeadline(after: deadline, woke: woke)
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds, and an absolute sleep on it that
/// resumes after signals.
enum Monotonic {
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
