import Synchronization

/// Decoded messages on their way from ingest's decoding task to its applying
/// task, in arrival order. The applier takes everything waiting at once, so
/// a busy stream costs one wake-up per batch, not one per message. Bounded:
/// past `capacity` waiting items, `append` waits until the applier has taken
/// them (and the MQTT client's own bounded buffer then stops reading the
/// socket). One producer and one consumer.
final class IngestHandoff: Sendable {
    private struct State {
        var items: [IngestService.Received] = []
        var finished = false
        /// The applier found nothing and waits for `wakeApplier`.
        var applierWaits = false
        /// The producer found the handoff full and waits for `wakeProducer`.
        var producerWaits = false
    }

    private let state = Mutex(State())
    private let capacity: Int
    private let applierWakeups: AsyncStream<Void>
    private let wakeApplier: AsyncStream<Void>.Continuation
    private let producerWakeups: AsyncStream<Void>
    private let wakeProducer: AsyncStream<Void>.Continuation

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
        (applierWakeups, wakeApplier) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        (producerWakeups, wakeProducer) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Adds one item; waits while the handoff is full.
    func append(_ item: IngestService.Received) async {
        let (wake, full) = state.withLock { s -> (Bool, Bool) in
            s.items.append(item)
            let wake = s.applierWaits
            s.applierWaits = false
            let full = s.items.count >= capacity && !s.finished
            if full { s.producerWaits = true }
            return (wake, full)
        }
        if wake { wakeApplier.yield() }
        guard full else { return }
        var wakeups = producerWakeups.makeAsyncIterator()
        while state.withLock({ $0.producerWaits }) {
            guard await wakeups.next() != nil else { return }
        }
    }

    /// Items waiting for the applier (for tests).
    var waitingCount: Int { state.withLock { $0.items.count } }
    /// Whether the producer waits for room (for tests).
    var producerIsWaiting: Bool { state.withLock { $0.producerWaits } }

    /// No more items: the applier returns once it has applied the last.
    func finish() {
        state.withLock { $0.finished = true }
        wakeApplier.yield()
    }

    /// Applies every item, in order, until `finish`. Cancelled (the console
    /// shutting down), it goes on applying until the producer has finished
    /// too, so nothing already decoded is dropped.
    func drain(_ apply: (IngestService.Received) -> Void) async {
        var wakeups = applierWakeups.makeAsyncIterator()
        while true {
            let (batch, finished) = take()
            if !batch.isEmpty {
                for item in batch { apply(item) }
                continue
            }
            if finished { return }
            if await wakeups.next() == nil {
                // Cancelled: the stream no longer waits, so yield until the
                // producer (cancelled too) has appended its last item.
                await Task.yield()
            }
        }
    }

    /// Everything waiting; wakes a producer that waited for room.
    private func take() -> (batch: [IngestService.Received], finished: Bool) {
        let (batch, finished, producerWaited) = state.withLock { s -> ([IngestService.Received], Bool, Bool) in
            let batch = s.items
            s.items = []
            s.items.reserveCapacity(batch.count)
            if batch.isEmpty && !s.finished { s.applierWaits = true }
            let producerWaited = s.producerWaits
            s.producerWaits = false
            return (batch, s.finished, producerWaited)
        }
        if producerWaited { wakeProducer.yield() }
        return (batch, finished)
    }
}
