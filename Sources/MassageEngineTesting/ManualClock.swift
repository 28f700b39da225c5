import Foundation
import MassageEngine
import Synchronization

/// A wall clock tests (the engine's and the agent's) set and advance by
/// hand. It is a monotonic clock too: the seconds it was advanced forward.
public final class ManualClock: WallClock, MonotonicClock {
    private let current: Mutex<(date: Date, monotonic: Double)>

    /// Starts at `start` (default: 2026-01-01T09:00:00Z, a fixed instant so
    /// that test output is the same on every run).
    public init(_ start: Date = Date(timeIntervalSince1970: 1_767_258_000)) {
        current = Mutex((start, 0))
    }

    public func now() -> Date { current.withLock { $0.date } }

    public func monotonicSeconds() -> Double { current.withLock { $0.monotonic } }

    /// Moves the clock forward (or back, with a negative interval; monotonic
    /// time moves forward only).
    public func advance(by seconds: TimeInterval) {
        current.withLock {
            $0.date = $0.date.addingTimeInterval(seconds)
            if seconds > 0 { $0.monotonic += seconds }
        }
    }

    /// Moves monotonic time alone (a control loop that skipped ticks).
    public func advanceMonotonic(by seconds: TimeInterval) {
        current.withLock { $0.monotonic += max(0, seconds) }
    }

    public func advance(by duration: Duration) {
        let (seconds, attoseconds) = duration.components
        advance(by: TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18)
    }

    public func set(_ date: Date) {
        current.withLock { $0.date = date }
    }
}
