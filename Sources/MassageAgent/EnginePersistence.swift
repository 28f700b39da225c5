import Dispatch
import MassageEngine

/// Runs the engine's persistence hand-off (`MassageEngine.flushPersistence()`,
/// which calls the synchronous `EngineStorage.apply`: a SQLite transaction
/// on a massager) on a serial dispatch queue of its own, and lets a task
/// await it without holding a thread of Swift's cooperative pool. That pool
/// has as many threads as cores (two on a small board) and runs the MQTT,
/// command and outbox tasks; a flush blocks for as long as SQLite writes,
/// and for a checkpoint's fsync on the board's flash.
///
/// The storage keeps blocking, on purpose: the engine is a synchronous state
/// machine and `EngineStorage` a synchronous protocol, and a blocking write
/// on a thread that does nothing else is the right tool. The control thread
/// never flushes (it only wakes the persistence loop), so nothing here can
/// delay a tick.
///
/// A flush that has started runs to its end even if the awaiting task is
/// cancelled: the driver's last flush happens after its cancellation, and
/// the engine's changes must reach storage.
public final class EnginePersistence: Sendable {
    public let engine: MassageEngine
    /// Serial: flushes run one after another (the engine serialises them
    /// too), each on a thread of dispatch's pool, outside the cooperative one.
    private let queue: DispatchQueue

    public init(engine: MassageEngine, label: String = "massage-agent.persistence") {
        self.engine = engine
        queue = DispatchQueue(label: label)
    }

    /// Hands the engine's pending changes to storage and returns when they
    /// are stored (or throws the storage's error; the changes stay pending).
    public func flush() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            queue.async { [engine] in
                continuation.resume(with: Result { try engine.flushPersistence() })
            }
        }
    }
}
