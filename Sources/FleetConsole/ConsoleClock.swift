import Foundation

/// The console's time: what its loops and decisions read as "now", and how
/// they wait. Injected (`ConsoleCore.init(…, clock:)`), so a test can run
/// the console's loops on a manual clock instead of waiting for real
/// seconds. Wall-clock time, because what the console decides by it —
/// expiries, timeouts, alert windows, retention — is compared with times
/// devices and people write. Ingest's batching (`flushLoop`) keeps the real
/// monotonic clock: it is about how much work a commit carries, not about
/// what time it is.
public protocol ConsoleClock: Sendable {
    func now() -> Date
    /// Returns after `duration` of this clock's time, or throws when the task is cancelled.
    func sleep(for duration: Duration) async throws
}

/// The system's clock.
public struct SystemConsoleClock: ConsoleClock {
    public init() {}
    public func now() -> Date { Date() }
    public func sleep(for duration: Duration) async throws { try await Task.sleep(for: duration) }
}
