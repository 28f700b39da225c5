import Synchronization

/// A `Mutex` that can be shared by reference (a `Mutex` itself cannot be copied).
public final class LockedBox<Value: Sendable>: Sendable {
    public let mutex: Mutex<Value>
    public init(_ value: Value) { mutex = Mutex(value) }
}
