import Foundation
import GRDB
import MassageEngine

/// The agent's SQLite file (WAL): the durable outbox, the replies to
/// commands already executed, the epoch, the applied configuration, and
/// the engine's ledger, schedules and active-session marker.
///
/// Migrations are named and append-only: never edit one that has shipped.
public final class AgentDatabase: Sendable {
    let writer: DatabasePool

    public init(path: String) throws {
        var config = Configuration()
        config.label = "massage-agent"
        config.busyMode = .timeout(5)
        // WAL with synchronous=NORMAL: a commit survives a crash or SIGKILL of
        // the process (it is in the WAL); only a power cut can lose the last
        // transactions, never corrupt the file. FULL would fsync every command
        // reply and outbox entry (tens of milliseconds each on a device's flash).
        config.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
        writer = try DatabasePool(path: path, configuration: config)
        try Self.migrator.migrate(writer)
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: outbox, commands, meta, engine state") { db in
            try db.create(table: "meta") { t in
                t.primaryKey("key", .text)
                t.column("value", .text).notNull()
            }
            try db.create(table: "outbox") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("topic", .text).notNull()
                t.column("payload", .blob).notNull()
                t.column("qos", .integer).notNull()
                t.column("retain", .boolean).notNull()
                t.column("created_at", .double).notNull()
            }
            try db.create(table: "command_reply") { t in
                t.primaryKey("id", .text)
                t.column("reply", .blob).notNull()
                t.column("received_at", .double).notNull().indexed()
            }
            try db.create(table: "engine_state") { t in
                t.primaryKey("key", .text)
                t.column("json", .blob).notNull()
            }
            try db.create(table: "schedule") { t in
                t.primaryKey("id", .text)
                t.column("json", .blob).notNull()
            }
        }
        m.registerMigration("v2: delivered events, kept for resync") { db in
            try db.create(table: "delivered_event") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("topic", .text).notNull()
                t.column("epoch", .integer).notNull()
                t.column("seq", .integer).notNull()
                t.column("payload", .blob).notNull()
                t.uniqueKey(["topic", "epoch", "seq"])
            }
        }
        m.registerMigration("v3: command replies in one B-tree keyed by id") { db in
            // Every command writes its reply before the reply goes out. As a
            // rowid table with an index on id and one on received_at, that
            // was three B-tree pages (12 KiB of WAL) on the command path;
            // keyed by id alone it is one. Pruning (every 50 commands) scans
            // the few thousand rows instead of using an index.
            try db.execute(sql: """
                CREATE TABLE command_reply_v3 (id TEXT NOT NULL PRIMARY KEY, reply BLOB NOT NULL, received_at DOUBLE NOT NULL) WITHOUT ROWID;
                INSERT INTO command_reply_v3 (id, reply, received_at) SELECT id, reply, received_at FROM command_reply;
                DROP TABLE command_reply;
                ALTER TABLE command_reply_v3 RENAME TO command_reply;
                """)
        }
        return m
    }

    // MARK: Access from tasks

    /// One write transaction, awaited: the calling task suspends while the
    /// transaction runs on GRDB's writer queue (a serial dispatch queue of
    /// its own), so SQLite's I/O (and a checkpoint's fsync, tens of
    /// milliseconds on a board's flash) never holds a thread of Swift's
    /// cooperative pool, which is as many threads as cores (two on a small
    /// board) and runs the MQTT and command tasks. Writes are serialised with
    /// every other write of this database, blocking or not.
    ///
    /// GRDB's `asyncWrite(_:completion:)` under a continuation rather than its
    /// `write` async: that one honours task cancellation (it interrupts the
    /// statement, rolls back and throws `CancellationError`), and a task the
    /// agent cancels at shutdown would then lose the outbox entry or command
    /// reply it was storing. A write the agent starts runs to its end, as the
    /// blocking one did; only the thread is given back.
    func write<T: Sendable>(_ updates: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            writer.asyncWrite(updates) { _, result in continuation.resume(with: result) }
        }
    }

    /// One read (a snapshot of the last commit), awaited on one of GRDB's
    /// reader queues; like ``write(_:)``, it is not abandoned on cancellation
    /// (a repeated command id must not look new because its task was being
    /// cancelled).
    func read<T: Sendable>(_ value: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            writer.asyncRead { db in continuation.resume(with: Result { try value(db.get()) }) }
        }
    }

    // MARK: Meta

    func meta(_ key: String) async throws -> String? {
        try await read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [key]) }
    }

    /// Increments and returns the epoch: one more on every agent start.
    /// Blocking: `AgentService.init` (synchronous) calls it once at start-up,
    /// before any of the agent's tasks runs.
    public func nextEpoch() throws -> UInt64 {
        try writer.write { db in
            let current = try UInt64.fetchOne(db, sql: "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'epoch'") ?? 0
            let next = current + 1
            try db.execute(sql: "INSERT INTO meta(key, value) VALUES ('epoch', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", arguments: ["\(next)"])
            return next
        }
    }
}

// MARK: - Engine storage

// Blocking on purpose: `EngineStorage` is synchronous (the engine is a
// synchronous state machine), and the engine calls it from
// `flushPersistence()`, which the agent runs on `EnginePersistence`'s
// dispatch queue, never on a cooperative thread nor on the control thread
// (and once from `MassageEngine.init`, at start-up). Hopping to GRDB's async
// API from there would only add a second queue hop.
extension AgentDatabase: EngineStorage {
    public func load() throws -> PersistedState {
        try writer.read { db in
            let decoder = JSONDecoder()
            var state = PersistedState()
            if let data = try Data.fetchOne(db, sql: "SELECT json FROM engine_state WHERE key = 'usage'") {
                state.usage = try decoder.decode(UsageCounters.self, from: data)
            }
            if let data = try Data.fetchOne(db, sql: "SELECT json FROM engine_state WHERE key = 'active_session'") {
                state.activeSession = try decoder.decode(ActiveSessionMarker.self, from: data)
            }
            if let data = try Data.fetchOne(db, sql: "SELECT json FROM engine_state WHERE key = 'latched_faults'") {
                state.latchedFaults = try decoder.decode([Fault].self, from: data)
            }
            if let data = try Data.fetchOne(db, sql: "SELECT json FROM engine_state WHERE key = 'pain_lockout'") {
                state.painLockout = try decoder.decode(PainLockout.self, from: data)
            }
            state.schedules = try Data.fetchAll(db, sql: "SELECT json FROM schedule ORDER BY id").map {
                try decoder.decode(ScheduledSession.self, from: $0)
            }.sorted { $0.at < $1.at }
            return state
        }
    }

    public func apply(_ batch: PersistenceBatch) throws {
        guard !batch.isEmpty else { return }
        try writer.write { db in try Self.write(batch, in: db) }
    }

    /// Writes a batch, and the outbox messages of its events, in one
    /// transaction: a session's end is in the ledger exactly when its event
    /// is in the outbox. The messages are made (stamped) inside the
    /// transaction, so that their `seq` order is the outbox order (see
    /// `MessageStamper`). Returns the outbox entries dropped for room.
    func apply(_ batch: PersistenceBatch, limits: OutboxLimits,
               outbox makeItems: () throws -> [(topic: String, payload: Data, qos: Int, retain: Bool)]) throws -> Int {
        try writer.write { db in
            try Self.write(batch, in: db)
            let items = try makeItems()
            return items.isEmpty ? 0 : try Outbox.insert(items, at: Date(), limits: limits, in: db)
        }
    }

    private static func write(_ batch: PersistenceBatch, in db: Database) throws {
        let encoder = JSONEncoder()
        if let usage = batch.usage {
            try db.execute(sql: "INSERT OR REPLACE INTO engine_state(key, json) VALUES ('usage', ?)", arguments: [try encoder.encode(usage)])
        }
        switch batch.activeSession {
        case .unchanged: break
        case .set(let marker):
            try db.execute(sql: "INSERT OR REPLACE INTO engine_state(key, json) VALUES ('active_session', ?)", arguments: [try encoder.encode(marker)])
        case .clear:
            try db.execute(sql: "DELETE FROM engine_state WHERE key = 'active_session'")
        }
        for schedule in batch.upsertSchedules {
            try db.execute(sql: "INSERT OR REPLACE INTO schedule(id, json) VALUES (?, ?)", arguments: [schedule.id.rawValue, try encoder.encode(schedule)])
        }
        for id in batch.removeSchedules {
            try db.execute(sql: "DELETE FROM schedule WHERE id = ?", arguments: [id.rawValue])
        }
        if let faults = batch.latchedFaults {
            try db.execute(sql: "INSERT OR REPLACE INTO engine_state(key, json) VALUES ('latched_faults', ?)", arguments: [try encoder.encode(faults)])
        }
        switch batch.painLockout {
        case .unchanged: break
        case .set(let lockout):
            try db.execute(sql: "INSERT OR REPLACE INTO engine_state(key, json) VALUES ('pain_lockout', ?)", arguments: [try encoder.encode(lockout)])
        case .clear:
            try db.execute(sql: "DELETE FROM engine_state WHERE key = 'pain_lockout'")
        }
    }
}
