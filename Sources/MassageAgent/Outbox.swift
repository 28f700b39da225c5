import Foundation
import GRDB
import Synchronization

/// A message waiting in the outbox.
public struct OutboxEntry: Sendable, Equatable {
    public var id: Int64
    public var topic: String
    public var payload: Data
    public var qos: Int
    public var retain: Bool
    public var createdAt: Date
}

/// How big the outbox may grow before it drops its oldest messages.
public struct OutboxLimits: Sendable, Equatable {
    public var maxMessages: Int
    public var maxBytes: Int
    public init(maxMessages: Int = 10_000, maxBytes: Int = 16 * 1024 * 1024) {
        self.maxMessages = maxMessages
        self.maxBytes = maxBytes
    }
}

/// The durable outbox: events, usage and reported config are written here
/// before they are published and removed only when the broker acknowledged
/// them, so an outage or a SIGKILL loses nothing. Delivery is in insertion
/// order. Bounded: past `limits` the oldest entries are dropped and counted
/// (the count is reported in usage as `outbox_dropped`).
public final class Outbox: Sendable {
    private let database: AgentDatabase
    public let limits: OutboxLimits

    public init(database: AgentDatabase, limits: OutboxLimits = .init()) {
        self.database = database
        self.limits = limits
    }

    /// Appends messages in one transaction; returns how many old ones were dropped to make room.
    @discardableResult
    public func enqueue(_ items: [(topic: String, payload: Data, qos: Int, retain: Bool)], at date: Date = Date()) throws -> Int {
        try database.writer.write { db in
            for item in items {
                try db.execute(
                    sql: "INSERT INTO outbox(topic, payload, qos, retain, created_at) VALUES (?, ?, ?, ?, ?)",
                    arguments: [item.topic, item.payload, item.qos, item.retain, date.timeIntervalSince1970])
            }
            var dropped = 0
            var (count, bytes) = try Self.size(db)
            while count > limits.maxMessages || (bytes > limits.maxBytes && count > 1) {
                guard let oldest = try Row.fetchOne(db, sql: "SELECT id, length(payload) AS n FROM outbox ORDER BY id LIMIT 1") else { break }
                try db.execute(sql: "DELETE FROM outbox WHERE id = ?", arguments: [oldest["id"] as Int64])
                count -= 1
                bytes -= oldest["n"] as Int
                dropped += 1
            }
            if dropped > 0 {
                try db.execute(sql: """
                    INSERT INTO meta(key, value) VALUES ('outbox_dropped', ?)
                    ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + ? AS TEXT)
                    """, arguments: ["\(dropped)", dropped])
            }
            return dropped
        }
    }

    private static func size(_ db: Database) throws -> (Int, Int) {
        let row = try Row.fetchOne(db, sql: "SELECT count(*) AS c, coalesce(sum(length(payload)), 0) AS b FROM outbox")
        return (row?["c"] ?? 0, row?["b"] ?? 0)
    }

    /// The oldest `limit` entries, in delivery order.
    public func peek(limit: Int) throws -> [OutboxEntry] {
        try database.writer.read { db in
            try Row.fetchAll(db, sql: "SELECT id, topic, payload, qos, retain, created_at FROM outbox ORDER BY id LIMIT ?", arguments: [limit]).map {
                OutboxEntry(id: $0["id"], topic: $0["topic"], payload: $0["payload"], qos: $0["qos"], retain: $0["retain"],
                            createdAt: Date(timeIntervalSince1970: $0["created_at"]))
            }
        }
    }

    public func remove(_ ids: [Int64]) throws {
        guard !ids.isEmpty else { return }
        try database.writer.write { db in
            try db.execute(sql: "DELETE FROM outbox WHERE id IN (\(ids.map { _ in "?" }.joined(separator: ",")))", arguments: StatementArguments(ids))
        }
    }

    public var count: Int {
        (try? database.writer.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox") ?? 0 }) ?? 0
    }

    /// Entries dropped for space since the database was created.
    public func droppedTotal() throws -> Int {
        Int(try database.meta("outbox_dropped") ?? "0") ?? 0
    }
}

/// The replies to commands already executed, so a repeated command id gets
/// the first reply again and runs nothing. Keeps every reply of the last
/// 24 hours and, beyond that, the newest 1,000.
public final class CommandReplyLog: Sendable {
    private let database: AgentDatabase
    public let keepNewest: Int
    public let keepFor: TimeInterval

    /// Every id the table holds (and, until the next prune, a few it no
    /// longer does): a new id — nearly every command — is answered from
    /// memory; only a repeat reads the database. A database read per command
    /// was a quarter of the agent's CPU on the command path.
    private let knownIDs: Mutex<Set<String>>

    public init(database: AgentDatabase, keepNewest: Int = 1_000, keepFor: TimeInterval = 24 * 3600) throws {
        self.database = database
        self.keepNewest = keepNewest
        self.keepFor = keepFor
        knownIDs = Mutex(try Self.ids(database))
    }

    private static func ids(_ database: AgentDatabase) throws -> Set<String> {
        try database.writer.read { db in Set(try String.fetchAll(db, sql: "SELECT id FROM command_reply")) }
    }

    public func reply(for id: String) throws -> Data? {
        guard knownIDs.withLock({ $0.contains(id) }) else { return nil }
        return try database.writer.read { db in try Data.fetchOne(db, sql: "SELECT reply FROM command_reply WHERE id = ?", arguments: [id]) }
    }

    /// Remembers a reply. Old replies are pruned every `pruneEvery` records,
    /// not at each one: the pruning query sorts the whole log, and keeping a
    /// few more than the minimum is harmless (it only ever keeps more).
    public func record(id: String, reply: Data, at date: Date = Date()) throws {
        let prune = recorded.add(1, ordering: .relaxed).newValue % Self.pruneEvery == 0
        try database.writer.write { db in
            try db.cachedStatement(sql: "INSERT OR IGNORE INTO command_reply(id, reply, received_at) VALUES (?, ?, ?)")
                .execute(arguments: [id, reply, date.timeIntervalSince1970])
            if prune { try Self.prune(db, before: date.timeIntervalSince1970 - keepFor, keepNewest: keepNewest) }
        }
        // After the commit: a concurrent repeat either finds the row or runs first (commands are handled one at a time).
        knownIDs.withLock { _ = $0.insert(id) }
        if prune { try forgetPruned() }
    }

    private func forgetPruned() throws {
        let ids = try Self.ids(database)
        knownIDs.withLock { $0 = ids }
    }

    static let pruneEvery = 50
    private let recorded = Atomic<Int>(0)

    private static func prune(_ db: Database, before cutoff: TimeInterval, keepNewest: Int) throws {
        try db.execute(sql: """
            DELETE FROM command_reply WHERE received_at < ? AND id NOT IN
              (SELECT id FROM command_reply ORDER BY received_at DESC LIMIT ?)
            """, arguments: [cutoff, keepNewest])
    }

    /// Prunes now (at start-up, and for tests).
    public func prune(at date: Date = Date()) throws {
        try database.writer.write { db in try Self.prune(db, before: date.timeIntervalSince1970 - keepFor, keepNewest: keepNewest) }
        try forgetPruned()
    }

    public var count: Int {
        (try? database.writer.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM command_reply") ?? 0 }) ?? 0
    }
}
