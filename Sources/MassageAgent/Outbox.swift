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
///
/// Every access is awaited (``AgentDatabase/write(_:)``): the agent's tasks
/// call it, and none of them may hold a cooperative thread while SQLite
/// writes. Only the engine's hand-off writes to it blocking, inside its own
/// transaction (`insert(_:at:limits:in:)`, on the persistence queue).
public final class Outbox: Sendable {
    private let database: AgentDatabase
    public let limits: OutboxLimits

    public init(database: AgentDatabase, limits: OutboxLimits = .init()) {
        self.database = database
        self.limits = limits
    }

    /// Appends messages in one transaction; returns how many old ones were dropped to make room.
    @discardableResult
    public func enqueue(_ items: [(topic: String, payload: Data, qos: Int, retain: Bool)], at date: Date = Date()) async throws -> Int {
        let limits = limits
        return try await database.write { db in try Self.insert(items, at: date, limits: limits, in: db) }
    }

    /// Appends one message whose payload is made inside the write
    /// transaction: stamping it there (`MessageStamper`) makes the outbox
    /// order the `seq` order without a lock held across the write. Returns
    /// how many old messages were dropped to make room.
    @discardableResult
    func enqueue(topic: String, qos: Int, retain: Bool, at date: Date = Date(),
                 payload: @escaping @Sendable () throws -> Data) async throws -> Int {
        let limits = limits
        return try await database.write { db in
            try Self.insert([(topic: topic, payload: try payload(), qos: qos, retain: retain)], at: date, limits: limits, in: db)
        }
    }

    /// Appends messages inside the caller's transaction (the engine's batch
    /// and its events go in together); returns how many old ones were
    /// dropped to make room.
    static func insert(_ items: [(topic: String, payload: Data, qos: Int, retain: Bool)], at date: Date, limits: OutboxLimits, in db: Database) throws -> Int {
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

    private static func size(_ db: Database) throws -> (Int, Int) {
        let row = try Row.fetchOne(db, sql: "SELECT count(*) AS c, coalesce(sum(length(payload)), 0) AS b FROM outbox")
        return (row?["c"] ?? 0, row?["b"] ?? 0)
    }

    /// The oldest `limit` entries, in delivery order.
    public func peek(limit: Int) async throws -> [OutboxEntry] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT id, topic, payload, qos, retain, created_at FROM outbox ORDER BY id LIMIT ?", arguments: [limit]).map {
                OutboxEntry(id: $0["id"], topic: $0["topic"], payload: $0["payload"], qos: $0["qos"], retain: $0["retain"],
                            createdAt: Date(timeIntervalSince1970: $0["created_at"]))
            }
        }
    }

    /// Removes delivered entries (the broker acknowledged them).
    public func remove(_ ids: [Int64]) async throws {
        guard !ids.isEmpty else { return }
        try await database.write { db in
            try db.execute(sql: "DELETE FROM outbox WHERE id IN (\(ids.map { _ in "?" }.joined(separator: ",")))", arguments: StatementArguments(ids))
        }
    }

    /// Entries waiting (0 when the database cannot be read).
    public var count: Int {
        get async {
            (try? await database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox") ?? 0 }) ?? 0
        }
    }

    /// Entries dropped for space since the database was created.
    public func droppedTotal() async throws -> Int {
        Int(try await database.meta("outbox_dropped") ?? "0") ?? 0
    }
}
