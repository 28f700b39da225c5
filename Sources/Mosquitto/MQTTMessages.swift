import DequeModule
import Synchronization

/// The messages a client receives, as an `AsyncSequence` for one consumer.
///
/// Overflow policy: the buffer holds up to `capacity` messages. When it is
/// full the client stops reading its socket (TCP backpressure: the broker
/// queues for us, up to its own limits) and resumes once the consumer has
/// drained it to half. Nothing is dropped by the client. The sequence ends
/// when the client shuts down.
public struct MQTTMessages: AsyncSequence, Sendable {
    public typealias Element = MQTTMessage
    let buffer: InboundBuffer

    public struct AsyncIterator: AsyncIteratorProtocol {
        let buffer: InboundBuffer
        public mutating func next() async -> MQTTMessage? {
            await buffer.next()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(buffer: buffer)
    }
}

final class InboundBuffer: Sendable {
    private struct State {
        var queue = Deque<MQTTMessage>()
        var waiter: CheckedContinuation<MQTTMessage?, Never>?
        var finished = false
        var paused = false
    }

    private let state = Mutex(State())
    let capacity: Int
    private let resumeBelow: Int
    /// Called (outside the lock) when a paused buffer has room again.
    private let onRoom: @Sendable () -> Void

    init(capacity: Int, onRoom: @escaping @Sendable () -> Void) {
        self.capacity = max(capacity, 1)
        self.resumeBelow = max(self.capacity / 2, 1)
        self.onRoom = onRoom
    }

    /// True while the reader must not take more from the socket.
    var isPaused: Bool { state.withLock { $0.paused } }

    var count: Int { state.withLock { $0.queue.count } }

    /// Called on the loop thread from libmosquitto's message callback.
    func append(_ message: MQTTMessage) {
        let waiter: CheckedContinuation<MQTTMessage?, Never>? = state.withLock { s in
            guard !s.finished else { return nil }
            if let w = s.waiter {
                s.waiter = nil
                return w
            }
            s.queue.append(message)
            if s.queue.count >= capacity { s.paused = true }
            return nil
        }
        waiter?.resume(returning: message)
    }

    func next() async -> MQTTMessage? {
        if Task.isCancelled { return nil }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<MQTTMessage?, Never>) in
                enum Outcome { case value(MQTTMessage?, wake: Bool), wait }
                let outcome: Outcome = state.withLock { s in
                    if let m = s.queue.popFirst() {
                        var wake = false
                        if s.paused && s.queue.count < resumeBelow {
                            s.paused = false
                            wake = true
                        }
                        return .value(m, wake: wake)
                    }
                    // One consumer at a time: a second concurrent reader ends.
                    if s.finished || s.waiter != nil { return .value(nil, wake: false) }
                    s.waiter = c
                    return .wait
                }
                if case .value(let m, let wake) = outcome {
                    c.resume(returning: m)
                    if wake { onRoom() }
                }
            }
        } onCancel: {
            let w = state.withLock { s -> CheckedContinuation<MQTTMessage?, Never>? in
                defer { s.waiter = nil }
                return s.waiter
            }
            w?.resume(returning: nil)
        }
    }

    func finish() {
        let w = state.withLock { s -> CheckedContinuation<MQTTMessage?, Never>? in
            s.finished = true
            defer { s.waiter = nil }
            return s.waiter
        }
        w?.resume(returning: nil)
    }
}
