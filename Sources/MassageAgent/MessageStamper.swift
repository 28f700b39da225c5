import FleetProtocol
import Foundation
import Synchronization

/// Numbers the agent's messages (`ts`, `epoch`, and `seq` per topic within
/// the epoch). A message bound for the outbox is stamped inside the write
/// transaction that stores it (`Outbox.enqueue(topic:qos:retain:at:payload:)`,
/// `AgentDatabase.apply(_:limits:outbox:)`); SQLite has one writer and GRDB
/// runs this database's writes one at a time on its writer queue, so on every
/// topic the outbox order is the `seq` order, whether a message comes from a
/// command, the usage timer or the engine's persistence hand-off
/// (`AgentEngineStorage`). No lock of ours is held across the write, so a
/// task awaiting it holds no thread.
final class MessageStamper: Sendable {
    let epoch: UInt64
    private let seqs = Mutex<[DeviceTopicKind: UInt64]>([:])

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

    /// The last `seq` numbered on a topic in this epoch.
    func last(_ kind: DeviceTopicKind) -> UInt64 {
        seqs.withLock { $0[kind] ?? 0 }
    }
}
