import DequeModule
import Synchronization

/// The messages a client receives, as an `AsyncSequence` for one consumer.
///
/// Overflow policy: the buffer holds up to `capacity` messages. When it is
/// full the client stops reading its socket (TCP backpressure: the broker
/// queues for us, up to its own limits) and resumes once the consumer has
/// drained it to half. Nothing is dropped by the client. The sequence ends
/// when the client shuts down.
///
/// A pause is bounded by the keepalive: while it stops reading, the client
/// cannot read the broker's PINGRESP either, so after about twice the
/// keepalive it ends the connection and reconnects (the error says the
/// consumer fell behind). A persistent session (`cleanStart: false` with a
/// session expiry) loses nothing: the broker resends what was not
/// acknowledged. A clean session loses what the broker held for it.
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
        /// When the current pause began (for the keepalive error's text).
        var pausedSince: ContinuousClock.Instant?
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

    /// How long the current pause has lasted, or nil when reading.
    var pausedFor: Duration? {
        state.withLock { s in s.pausedSince.map { ContinuousClock.now - $0 } }
    }

    var count: Int { state.withLock { $0.queue.count } }

    /// Called on the loop thread from libmosquitto's message callback. The
    /// waiting consumer is woken by `flush()` once per batch read from the
    /// socket, not once per message: one task wake-up serves the whole batch.
    func append(_ message: MQTTMessage) {
        state.withLock { s in
            guard !s.finished else { return }
            s.queue.append(message)
            if s.queue.count >= capacity, !s.paused {
                s.paused = true
                s.pausedSince = .now
            }
        }
    }

    /// Hands the oldest message to a waiting consumer, if one waits.
    func flush() {
        let handoff = state.withLock { s -> (CheckedContinuation<MQTTMessage?, Never>, MQTTMessage)? in
            guard let w = s.waiter, let m = s.queue.popFirst() else { return nil }
            s.waiter = nil
            return (w, m)
        }
        if let (waiter, message) = handoff { waiter.resume(returning: message) }
    }

    func next() async -> MQTTMessage? {
        if Task.isCancelled { return nil }
        // Fast path: a message is ready; no continuation needed.
        let ready = state.withLock { s -> (MQTTMessage, Bool)? in
            guard let m = s.queue.popFirst() else { return nil }
            var wake = false
            if s.paused && s.queue.count < resumeBelow {
                s.paused = false
                s.pausedSince = nil
                wake = true
            }
            return (m, wake)
        }
        if let (message, wake) = ready {
            if wake { onRoom() }
            return message
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<MQTTMessage?, Never>) in
                enum Outcome { case value(MQTTMessage?, wake: Bool), wait }
                let outcome: Outcome = state.withLock { s in
                    if let m = s.queue.popFirst() {
                        var wake = false
                        if s.paused && s.queue.count < resumeBelow {
                            s.paused = false
                            s.pausedSince = nil
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
