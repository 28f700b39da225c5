import Foundation
import Glibc
import MassageEngine
import Synchronization

/// TEST ONLY: the simulated massager with a hand for a test to press its
/// pain button and a stopwatch on what the engine does with it
/// (`hardware.test_control` in agent.yaml; off by default; docs/operations.md,
/// "Simulator test control"). `TestControlServer` serves it on a UNIX socket.
///
/// It forwards every call to the `SimulatedMassager` and, on the side, takes
/// CLOCK_MONOTONIC (the same clock in every process of the machine):
///   - at a press: just before the simulator's button state flips;
///   - at the first `read` after it that reports the button held;
///   - at the first `releaseAll()` after that read, once the simulator has
///     released (pain-to-release = that − the press);
///   - at every `read`: the interval since the previous one, the tick jitter.
/// The control thread's share is a few atomic stores and one short lock for
/// the tick histogram that the server holds only to copy or clear it; no
/// allocation.
public final class SimulatorTestControl: MassagerHardware {
    public let simulator: SimulatedMassager

    /// The pending press (ns), 0 when none.
    private let pressedAt = Atomic<Int64>(0)
    /// The first read that reported the pending press (ns), 0 until then.
    private let seenAt = Atomic<Int64>(0)
    /// The first release after that read (ns), 0 until then.
    private let releasedAt = Atomic<Int64>(0)
    /// Every release the engine made: the last one's time and how many.
    private let lastRelease = Atomic<Int64>(0)
    private let releases = Atomic<Int>(0)
    /// The previous read (ns), 0 before the first.
    private let previousRead = Atomic<Int64>(0)
    /// Reads so far: a test waits on it to know a tick saw a change.
    private let readCount = Atomic<Int>(0)
    private let intervals = Mutex(TickHistogram())

    public init(simulator: SimulatedMassager) {
        self.simulator = simulator
    }

    // MARK: MassagerHardware (the control thread)

    public func read(engineTime: Double) -> SensorReadings {
        let now = Self.now()
        readCount.add(1, ordering: .releasing)
        let previous = previousRead.exchange(now, ordering: .relaxed)
        if previous != 0 { intervals.withLock { $0.record(now - previous) } }
        let readings = simulator.read(engineTime: engineTime)
        if readings.stopButtonPressed, pressedAt.load(ordering: .acquiring) != 0 {
            _ = seenAt.compareExchange(expected: 0, desired: Self.now(), ordering: .acquiringAndReleasing)
        }
        return readings
    }

    public func apply(_ command: ActuatorCommand) {
        simulator.apply(command)
    }

    public func releaseAll() {
        simulator.releaseAll()
        // After the simulator released: what the hardware has, not what was asked.
        let now = Self.now()
        lastRelease.store(now, ordering: .releasing)
        releases.add(1, ordering: .relaxed)
        if seenAt.load(ordering: .acquiring) != 0 {
            _ = releasedAt.compareExchange(expected: 0, desired: now, ordering: .acquiringAndReleasing)
        }
    }

    // MARK: The test's side (the server thread)

    /// One press and what the engine did with it (ns of CLOCK_MONOTONIC; 0 = not yet).
    public struct PressTiming: Sendable, Equatable {
        public var pressed: Int64
        public var seen: Int64
        public var released: Int64
    }

    /// Presses the pain button (held until `unpress()`) and returns the
    /// time just before the simulator's button state flipped.
    public func press() -> Int64 {
        seenAt.store(0, ordering: .releasing)
        releasedAt.store(0, ordering: .releasing)
        let now = Self.now()
        pressedAt.store(now, ordering: .releasing)
        simulator.inject(.painButton)
        return now
    }

    /// Lets go of the pain button.
    public func unpress() {
        simulator.clear(.painButton)
        pressedAt.store(0, ordering: .releasing)
    }

    /// How many times the engine has read the sensors.
    public var reads: Int { readCount.load(ordering: .acquiring) }

    /// The last press's timing (all zero before the first press).
    public var lastPress: PressTiming {
        PressTiming(pressed: pressedAt.load(ordering: .acquiring), seen: seenAt.load(ordering: .acquiring),
                    released: releasedAt.load(ordering: .acquiring))
    }

    /// The most recent `releaseAll()` (ns, 0 = none) and how many there were.
    public var releaseRecord: (last: Int64, count: Int) {
        (lastRelease.load(ordering: .acquiring), releases.load(ordering: .relaxed))
    }

    /// The intervals between reads since the last reset.
    public func tickIntervals() -> TickHistogram { intervals.withLock { $0 } }

    public func resetTickIntervals() {
        intervals.withLock { $0.reset() }
        previousRead.store(0, ordering: .relaxed)
    }

    static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}

/// Intervals in 10 µs bins up to 100 ms, the exact largest, and a count of
/// those beyond. Fixed size: recording never allocates.
public struct TickHistogram: Sendable, Equatable {
    public static let binNanoseconds: Int64 = 10_000
    public static let binCount = 10_000
    public private(set) var bins = [UInt32](repeating: 0, count: TickHistogram.binCount)
    public private(set) var count = 0
    public private(set) var beyond = 0
    public private(set) var maximum: Int64 = 0

    public init() {}

    mutating func record(_ nanoseconds: Int64) {
        count += 1
        maximum = max(maximum, nanoseconds)
        let bin = Int(max(0, nanoseconds) / Self.binNanoseconds)
        if bin < Self.binCount { bins[bin] &+= 1 } else { beyond += 1 }
    }

    mutating func reset() {
        for i in bins.indices { bins[i] = 0 }
        count = 0
        beyond = 0
        maximum = 0
    }

    /// The upper edge (ns) of the bin holding the `p` quantile (0…1); the
    /// maximum for one past the bins; 0 when empty.
    public func quantile(_ p: Double) -> Int64 {
        guard count > 0 else { return 0 }
        let rank = max(1, Int((Double(count) * p).rounded(.up)))
        var seen = 0
        for (bin, n) in bins.enumerated() {
            seen += Int(n)
            if seen >= rank { return min(maximum, Int64(bin + 1) * Self.binNanoseconds) }
        }
        return maximum
    }
}
