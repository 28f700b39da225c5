import Mosquitto
import Synchronization

/// Collects everything a client receives, so tests can wait on what arrived
/// with ``waitUntil(timeout:pollEvery:_:isolation:_:)`` instead of racing the
/// stream. Start one per client; it ends when the client shuts down.
public final class MessageCollector: Sendable {
    private let received = LockedBox<[MQTTMessage]>([])
    private let task: Task<Void, Never>

    public init(_ client: MQTTClient) {
        let received = self.received
        task = Task {
            for await message in client.messages {
                received.mutex.withLock { $0.append(message) }
            }
        }
    }

    deinit { task.cancel() }

    public var messages: [MQTTMessage] { received.mutex.withLock { $0 } }
    public var count: Int { received.mutex.withLock { $0.count } }

    public func messages(on topic: String) -> [MQTTMessage] {
        received.mutex.withLock { $0.filter { $0.topic == topic } }
    }

    /// Waits until at least `count` messages arrived (on `topic`, if given) and returns them.
    @discardableResult
    public func waitFor(_ count: Int, on topic: String? = nil, timeout: Duration = .seconds(10)) async throws -> [MQTTMessage] {
        try await waitForValue(timeout: timeout, "\(count) message(s)\(topic.map { " on \($0)" } ?? "")") {
            let list = topic.map { messages(on: $0) } ?? messages
            return list.count >= count ? list : nil
        }
    }
}

/// Waits for a client's connection state to satisfy `predicate`.
public func waitForState(
    _ client: MQTTClient, timeout: Duration = .seconds(10), _ description: String,
    _ predicate: @escaping (MQTTConnectionState) -> Bool
) async throws {
    try await waitUntil(timeout: timeout, "client '\(client.configuration.clientID)' \(description)") {
        predicate(client.connectionState)
    }
}

/// Records every connection state a client reports.
public final class StateRecorder: Sendable {
    private let seen = LockedBox<[MQTTConnectionState]>([])
    private let task: Task<Void, Never>

    public init(_ client: MQTTClient) {
        let seen = self.seen
        let stream = client.connectionStates // subscribe now, not when the task first runs
        task = Task {
            for await state in stream {
                seen.mutex.withLock { $0.append(state) }
            }
        }
    }

    deinit { task.cancel() }

    public var states: [MQTTConnectionState] { seen.mutex.withLock { $0 } }
}
