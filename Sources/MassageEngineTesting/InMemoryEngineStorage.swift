import Foundation
import MassageEngine
import Synchronization

/// Storage in memory, for tests and `engine-bench` (the agent keeps its
/// state in SQLite, `AgentEngineStorage`). Several engines created one after
/// another on the same instance see each other's state, which is how tests
/// simulate a restart; `failNextApplies(_:)` injects storage failures.
public final class InMemoryEngineStorage: EngineStorage {
    private struct State {
        var persisted: PersistedState
        var loads = 0
        var applies = 0
        var failuresToInject = 0
    }

    private let state: Mutex<State>

    public init(_ initial: PersistedState = PersistedState()) {
        state = Mutex(State(persisted: initial))
    }

    public func load() throws -> PersistedState {
        state.withLock { s in
            s.loads += 1
            return s.persisted
        }
    }

    public func apply(_ batch: PersistenceBatch) throws {
        try state.withLock { s throws(InjectedStorageFailure) in
            if s.failuresToInject > 0 {
                s.failuresToInject -= 1
                throw InjectedStorageFailure()
            }
            s.applies += 1
            s.persisted = batch.applied(to: s.persisted)
        }
    }

    /// What is persisted now.
    public var persisted: PersistedState { state.withLock { $0.persisted } }
    /// How many batches were applied successfully.
    public var applyCount: Int { state.withLock { $0.applies } }
    /// How many times `load()` was called.
    public var loadCount: Int { state.withLock { $0.loads } }

    /// Makes the next `count` calls to `apply(_:)` fail without changing anything.
    public func failNextApplies(_ count: Int) {
        state.withLock { $0.failuresToInject = count }
    }
}

/// The error `InMemoryEngineStorage` throws when told to fail.
public struct InjectedStorageFailure: Error, Sendable, CustomStringConvertible {
    public var description: String { "injected storage failure" }
}
