import FleetProtocol
import Foundation
import Synchronization

/// Numbers the agent's messages (`ts`, `epoch`, and `seq` per topic within
/// the epoch) and orders the writes to the outbox: stamping and storing
/// happen under one lock, so on every topic the outbox order is the `seq`
/// order, whether a message comes from a command, the usage timer or the
/// engine's persistence hand-off (`AgentEngineStorage`).
final class MessageStamper: Sendable {
    let epoch: UInt64
    private let seqs = Mutex<[DeviceTopicKind: UInt64]>([:])
    /// Held while a message is stamped and stored (never while publishing).
    private let writes = Mutex(())

    init(epoch: UInt64) {
        self.epoch = epoch
    }

    /// Encodes `body` with `ts`, `epoch` and the next `seq` of its topic.
    func stamp<Body: AgentMessage>(_ body: Body, at date: Date = Date()) throws -> [UInt8] {
        let seq = seqs.withLock { s -> UInt64 in
            let next = (s[Body.topicKind] ?? 0) &+ 1
            s[Body.topicKind] = next
            return next
        }
        return Array(try FleetJSON.encode(Stamped(body, envelope: Envelope(ts: date, epoch: epoch, seq: seq))))
    }

    /// Runs `body` (stamp, then store) with every other ordered write held off.
    func ordered<R>(_ body: () throws -> R) rethrows -> R {
        try writes.withLock { _ in try body() }
    }

    /// The last `seq` numbered on a topic in this epoch.
    func last(_ kind: DeviceTopicKind) -> UInt64 {
        seqs.withLock { $0[kind] ?? 0 }
    }
}
