import Foundation
import Synchronization

/// Where the engine reads wall-clock time: for schedules ("at 18:30") and
/// event timestamps. Control timing never uses it: the control loop counts
/// ticks (see `MassageEngine.tick()`), so a wall clock that jumps cannot
/// stretch or shorten a massage step.
public protocol WallClock: Sendable {
    func now() -> Date
}

/// The system's wall clock.
public struct SystemWallClock: WallClock {
    public init() {}
    public func now() -> Date { Date() }
}

/// A wall clock tests (the engine's and the agent's) set and advance by hand.
public final class ManualClock: WallClock {
    private let current: Mutex<Date>

    /// Starts at `start` (default: 2026-01-01T09:00:00Z, a fixed instant so
    /// that test output is the same on every run).
    public init(_ start: Date = Date(timeIntervalSince1970: 1_767_258_000)) {
        current = Mutex(start)
    }

    public func now() -> Date { current.withLock { $0 } }

    /// Moves the clock forward (or back, with a negative interval).
    public func advance(by seconds: TimeInterval) {
        current.withLock { $0 = $0.addingTimeInterval(seconds) }
    }

    public func advance(by duration: Duration) {
        advance(by: duration.timeInterval)
    }

    public func set(_ date: Date) {
        current.withLock { $0 = date }
    }
}

extension Duration {
    /// The duration in seconds, as a `TimeInterval`.
    var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }

    /// Whole milliseconds (truncated).
    var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
