import Foundation
import Glibc

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

/// Time that only moves forward, in seconds of engine time: the session
/// time limit and the pain lockout are measured on it, so neither a wall
/// clock that jumps nor a control loop that skips ticks can stretch them.
public protocol MonotonicClock: Sendable {
    func monotonicSeconds() -> Double
}

/// `CLOCK_MONOTONIC`, scaled by the engine's speed factor (demos and tests
/// run the engine N× faster; engine time runs N× faster with it).
public struct SystemMonotonicClock: MonotonicClock {
    public let speed: Double
    public init(speed: Double = 1) { self.speed = max(1, speed) }
    public func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return (Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9) * speed
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
