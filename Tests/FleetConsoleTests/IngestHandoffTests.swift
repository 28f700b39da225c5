@testable import FleetConsole
import FleetTestSupport
import Mosquitto
import Synchronization
import Testing

/// The handoff between ingest's decoding and applying stages: order kept,
/// bounded, nothing left behind at the end.
@Suite("Ingest handoff between decoding and applying")
struct IngestHandoffTests {
    /// An item that says which it was.
    static func item(_ n: Int) -> IngestService.Received {
        .rejected(MQTTMessage(topic: "item-\(n)", payload: []), why: "")
    }

    static func number(_ item: IngestService.Received) -> Int? {
        guard case .rejected(let message, _) = item else { return nil }
        return Int(message.topic.dropFirst("item-".count))
    }

    /// The numbers of the items applied, in order.
    final class Applied: Sendable {
        private let numbers = Mutex<[Int]>([])
        func add(_ item: IngestService.Received) { numbers.withLock { $0.append(IngestHandoffTests.number(item) ?? -1) } }
        var all: [Int] { numbers.withLock { $0 } }
    }

    final class Counter: Sendable {
        private let value = Mutex(0)
        func increment() { value.withLock { $0 += 1 } }
        var count: Int { value.withLock { $0 } }
    }

    @Test("every item is applied once, in the order it was appended, across many batches, and drain returns after finish", .timeLimit(.minutes(1)))
    func order() async throws {
        let handoff = IngestHandoff(capacity: 64)
        let applied = Applied()
        let count = 20_000
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await handoff.drain { applied.add($0) }
            }
            for n in 0..<count { await handoff.append(Self.item(n)) }
            handoff.finish()
        }
        #expect(applied.all == Array(0..<count))
    }

    @Test("a full handoff makes the producer wait until the applier takes what waits", .timeLimit(.minutes(1)))
    func bounded() async throws {
        let capacity = 5, count = 23
        let handoff = IngestHandoff(capacity: capacity)
        let appended = Counter()
        let producer = Task {
            for n in 0..<count {
                await handoff.append(Self.item(n))
                appended.increment()
            }
            handoff.finish()
        }
        try await waitUntil(timeout: .seconds(10), "the producer waits for room") { handoff.producerIsWaiting }
        #expect(handoff.waitingCount == capacity, "no more than the capacity waits")
        #expect(appended.count == capacity - 1, "the append that filled it has not returned")

        let applied = Applied()
        let applier = Task {
            await handoff.drain { applied.add($0) }
        }
        await producer.value
        await applier.value
        #expect(applied.all == Array(0..<count), "all of them, in order, once the applier made room")
        #expect(handoff.waitingCount == 0)
    }

    @Test("a cancelled applier goes on until the producer finishes, so nothing decoded is dropped at shutdown", .timeLimit(.minutes(1)))
    func cancelled() async throws {
        let handoff = IngestHandoff(capacity: 100)
        for n in 0..<10 { await handoff.append(Self.item(n)) }
        let applied = Applied()
        let applier = Task {
            await handoff.drain { applied.add($0) }
        }
        try await waitUntil(timeout: .seconds(10), "the first ten applied") { applied.all.count == 10 }
        applier.cancel()
        for n in 10..<15 { await handoff.append(Self.item(n)) }
        handoff.finish()
        await applier.value
        #expect(applied.all == Array(0..<15))
    }
}
