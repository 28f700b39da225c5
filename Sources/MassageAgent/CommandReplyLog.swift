import DequeModule
import Foundation
import GRDB
import Synchronization

/// The replies to commands already executed, so a repeated command id gets
/// the first reply again and runs nothing. Keeps every reply of the last
/// 24 hours and, beyond that, the newest 1,000.
///
/// The ids are also kept in memory, in the order they were recorded: a new
/// id (nearly every command) is told apart from a repeat without reading the
/// database, and pruning picks its victims from the front of that order and
/// deletes them by primary key — no sort of the table, and no re-read of
/// every id. Only a repeat reads the database (its first reply).
///
/// The command handler's accesses are awaited (``AgentDatabase/write(_:)``):
/// a reply is stored before it is sent without holding a cooperative thread
/// while SQLite writes. Only loading the ids (`init`) and the start-up prune
/// (`pruneAtStart`) block: `AgentService.init`, which is synchronous, runs
/// them once before any of the agent's tasks exists.
public final class CommandReplyLog: Sendable {
    private let database: AgentDatabase
    public let keepNewest: Int
    public let keepFor: TimeInterval

    private struct Known {
        var ids: Set<String> = []
        /// Oldest first, as recorded (`received_at`, seconds since 1970).
        var order: Deque<(id: String, at: Double)> = []
        var recordedSincePrune = 0
        /// One prune at a time: its victims are the front of `order`.
        var pruning = false
    }
    private let known: Mutex<Known>

    /// Records between two automatic prunes (`pruneIfDue`).
    static let pruneEvery = 50

    public init(database: AgentDatabase, keepNewest: Int = 1_000, keepFor: TimeInterval = 24 * 3600) throws {
        self.database = database
        self.keepNewest = keepNewest
        self.keepFor = keepFor
        let rows = try database.writer.read { db in  // blocking: start-up (see above)
            try Row.fetchAll(db, sql: "SELECT id, received_at FROM command_reply ORDER BY received_at")
        }
        var state = Known()
        for row in rows {
            let id: String = row[0]
            state.ids.insert(id)
            state.order.append((id, row[1]))
        }
        known = Mutex(state)
    }

    public func reply(for id: String) async throws -> Data? {
        guard known.withLock({ $0.ids.contains(id) }) else { return nil }
        return try await database.read { db in try Data.fetchOne(db, sql: "SELECT reply FROM command_reply WHERE id = ?", arguments: [id]) }
    }

    /// Remembers a reply (durably, before it is sent). A second record of
    /// the same id keeps the first reply.
    public func record(id: String, reply: Data, at date: Date = Date()) async throws {
        let at = date.timeIntervalSince1970
        try await database.write { db in
            try db.cachedStatement(sql: "INSERT OR IGNORE INTO command_reply(id, reply, received_at) VALUES (?, ?, ?)")
                .execute(arguments: [id, reply, at])
        }
        // After the commit: a concurrent repeat either finds the row or runs first (commands are handled one at a time).
        known.withLock { state in
            state.recordedSincePrune += 1
            if state.ids.insert(id).inserted { state.order.append((id, at)) }
        }
    }

    /// Prunes once every `pruneEvery` records; the agent calls it after a
    /// reply has gone out, so pruning is never on a command's round trip.
    /// Keeping a few more than the minimum in between is harmless.
    public func pruneIfDue(at date: Date = Date()) async throws {
        guard known.withLock({ $0.recordedSincePrune >= Self.pruneEvery }) else { return }
        try await prune(at: date)
    }

    /// Forgets replies older than `keepFor`, beyond the newest `keepNewest`
    /// (when due, and for tests).
    public func prune(at date: Date = Date()) async throws {
        guard let victims = takeVictims(at: date) else { return }
        do {
            try await database.write { db in try Self.delete(victims, in: db) }
        } catch {
            known.withLock { $0.pruning = false }
            throw error
        }
        forget(victims)
    }

    /// ``prune(at:)``, blocking: for `AgentService.init` (synchronous), once
    /// at start-up, before any of the agent's tasks runs.
    func pruneAtStart(at date: Date = Date()) throws {
        guard let victims = takeVictims(at: date) else { return }
        do {
            try database.writer.write { db in try Self.delete(victims, in: db) }
        } catch {
            known.withLock { $0.pruning = false }
            throw error
        }
        forget(victims)
    }

    /// The ids a prune removes, marked as being pruned; nil when there are
    /// none or another prune runs.
    private func takeVictims(at date: Date) -> [String]? {
        let cutoff = date.timeIntervalSince1970 - keepFor
        return known.withLock { state -> [String]? in
            guard !state.pruning else { return nil }
            state.recordedSincePrune = 0
            // Oldest first; stop at the first one young enough (a clock set
            // back can only make it keep more).
            let excess = max(0, state.order.count - keepNewest)
            let victims = state.order.prefix(excess).prefix { $0.at < cutoff }.map(\.id)
            guard !victims.isEmpty else { return nil }
            state.pruning = true
            return Array(victims)
        }
    }

    private static func delete(_ victims: [String], in db: Database) throws {
        let delete = try db.cachedStatement(sql: "DELETE FROM command_reply WHERE id = ?")
        for id in victims { try delete.execute(arguments: [id]) }
    }

    /// After the delete committed.
    private func forget(_ victims: [String]) {
        known.withLock { state in
            // Only a prune removes from the front, one at a time, and records
            // append at the back: the front is still exactly `victims`.
            state.order.removeFirst(victims.count)
            for id in victims { state.ids.remove(id) }
            state.pruning = false
        }
    }

    public var count: Int {
        get async {
            (try? await database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM command_reply") ?? 0 }) ?? 0
        }
    }
}
