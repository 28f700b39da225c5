import Foundation
import GRDB

/// The events the broker acknowledged last, kept so that `resync` can send
/// them again. The broker's acknowledgement is not the console's: a broker
/// SIGKILLed before it passed an event on (its sessions lost), or a console
/// killed between acknowledging an event and storing it, leaves a gap that
/// the console notices and asks a `resync` for; the outbox no longer has
/// those events, this does. Bounded: the newest `keep` events, each kept
/// once by `(topic, epoch, seq)`. Every access is awaited
/// (``AgentDatabase/write(_:)``): the outbox publisher and `resync` call it
/// from tasks.
public final class DeliveredEvents: Sendable {
    private let database: AgentDatabase
    public let keep: Int

    public init(database: AgentDatabase, keep: Int = 500) {
        self.database = database
        self.keep = keep
    }

    private struct Stamp: Decodable {
        var epoch: UInt64
        var seq: UInt64
    }

    /// Keeps delivered outbox entries (events only; anything without an
    /// `epoch` and `seq` is skipped) and drops the oldest beyond ``keep``.
    public func record(_ entries: [OutboxEntry]) async throws {
        let decoder = JSONDecoder()
        let stamped = entries.compactMap { entry in
            (try? decoder.decode(Stamp.self, from: entry.payload)).map { (entry: entry, epoch: $0.epoch, seq: $0.seq) }
        }
        guard !stamped.isEmpty else { return }
        let keep = keep
        try await database.write { db in
            for (entry, epoch, seq) in stamped {
                try db.execute(
                    sql: "INSERT OR IGNORE INTO delivered_event(topic, epoch, seq, payload) VALUES (?, ?, ?, ?)",
                    arguments: [entry.topic, Int64(bitPattern: epoch), Int64(bitPattern: seq), entry.payload])
            }
            try db.execute(
                sql: "DELETE FROM delivered_event WHERE id NOT IN (SELECT id FROM delivered_event ORDER BY id DESC LIMIT ?)",
                arguments: [keep])
        }
    }

    /// The kept events in `(epoch, seq)` order.
    public func all() async throws -> [(topic: String, payload: Data)] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT topic, payload FROM delivered_event ORDER BY epoch, seq").map { ($0["topic"], $0["payload"]) }
        }
    }

    public var count: Int {
        get async {
            (try? await database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM delivered_event") ?? 0 }) ?? 0
        }
    }
}
