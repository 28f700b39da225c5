@testable import FleetConsole
import Foundation
import Synchronization

/// A `ConsoleClock` a test moves by hand: `now()` is what the test set,
/// and a sleeper wakes when `advance` passes its deadline (or its task is
/// cancelled). The console's loops run on it without real time passing.
final class ManualConsoleClock: ConsoleClock {
    private struct State {
        var now: Date
        var sleepers: [UUID: (deadline: Date, continuation: CheckedContinuation<Void, any Error>)] = [:]
    }

    private let state: Mutex<State>

    init(_ start: Date) { state = Mutex(State(now: start)) }

    func now() -> Date { state.withLock { $0.now } }

    /// Tasks waiting in `sleep` now.
    var sleepers: Int { state.withLock { $0.sleepers.count } }

    func sleep(for duration: Duration) async throws {
        let id = UUID()
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                let now = state.withLock { s -> Bool in
                    // Cancelled before it slept, or no time to wait: return at once.
                    guard seconds > 0, !Task.isCancelled else { return true }
                    s.sleepers[id] = (s.now.addingTimeInterval(seconds), c)
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            state.withLock { $0.sleepers.removeValue(forKey: id)?.continuation }?.resume(throwing: CancellationError())
        }
        try Task.checkCancellation()
    }

    /// Moves the clock on and wakes every sleeper whose time has come.
    func advance(by seconds: TimeInterval) {
        let due = state.withLock { s -> [CheckedContinuation<Void, any Error>] in
            s.now = s.now.addingTimeInterval(seconds)
            let woken = s.sleepers.filter { $0.value.deadline <= s.now }
            for id in woken.keys { s.sleepers[id] = nil }
            return woken.values.map(\.continuation)
        }
        for c in due { c.resume() }
    }
}
