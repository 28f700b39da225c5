@testable import FleetConsole
import FleetProtocol
import FleetTestSupport
import Foundation
import Logging
import Testing

/// The storage boundary itself, run against both implementations: a fresh
/// SQLite file, and a fresh database on the shared test PostgreSQL server.
/// The end-to-end console suites run on one or the other as
/// `FLEET_TEST_DATABASE` says; these always run on both.
@Suite("Console store: the same semantics on SQLite and PostgreSQL", .tags(.postgres))
struct ConsoleStoreTests {
    static func withStore(_ backend: TestDatabase, _ body: (any ConsoleStore, String) async throws -> Void) async throws {
        let directory = try TemporaryDirectory(prefix: "console-store")
        defer { directory.remove() }
        let location: String
        switch backend {
        case .sqlite: location = directory.file("console.sqlite").path
        case .postgres: location = try await PostgresServer.shared().createDatabase()
        }
        try await ConsoleStoreAccess.withStore(location) { store in try await body(store, location) }
    }

    static let device = try! DeviceAddress(site: "clinic-north", device: "m-1")
    static let t0 = Date(timeIntervalSince1970: 1_790_000_000)

    static func event(_ type: EventType, session: String?, epoch: UInt64 = 7, seq: UInt64, reason: SessionAbortReason? = nil,
                      at seconds: Double = 0) -> (DeviceAddress, Stamped<Event>, Data) {
        let stamped = Stamped(Event(type: type, sessionID: session, program: "calf_relief", reason: reason),
                              envelope: Envelope(ts: t0.addingTimeInterval(seconds), epoch: epoch, seq: seq))
        return (device, stamped, try! FleetJSON.encode(stamped))
    }

    /// A device row as ingest writes it.
    static func row(_ address: DeviceAddress, _ change: (inout DeviceRecord) -> Void = { _ in }) -> Data {
        var record = DeviceRecord(site: address.site.rawValue, device: address.device.rawValue)
        change(&record)
        return try! FleetJSON.encode(record)
    }

    static func session(_ id: String, outcome: String, startedAt: Date?, endedAt: Date?, reason: String? = nil) -> SessionRecord {
        SessionRecord(sessionID: id, site: device.site.rawValue, device: device.device.rawValue, program: "calf_relief",
                      startedAt: startedAt, endedAt: endedAt, outcome: outcome, reason: reason)
    }

    @Test("events are stored once by (device, epoch, seq): duplicates in one batch and across batches come back as not new", arguments: [TestDatabase.sqlite, .postgres])
    func eventsOnce(_ backend: TestDatabase) async throws {
        try await Self.withStore(backend) { store, _ in
            var first = IngestBatch()
            first.events = [Self.event(.sessionStarted, session: "s1", seq: 1), Self.event(.sessionStep, session: "s1", seq: 2),
                            Self.event(.sessionStep, session: "s1", seq: 2)]
            let new = try await store.commit(first)
            #expect(new.map(\.type) == [.sessionStarted, .sessionStep], "the copy of seq 2 in the same batch is not new")

            var second = IngestBatch()
            second.events = [Self.event(.sessionStep, session: "s1", seq: 2), Self.event(.sessionCompleted, session: "s1", seq: 3),
                             Self.event(.sessionStarted, session: "s2", epoch: 8, seq: 1)]
            let again = try await store.commit(second)
            #expect(again.map(\.type) == [.sessionCompleted, .sessionStarted])
            #expect(try await store.eventCount(site: nil, device: nil) == 4)
            #expect(try await store.eventCount(site: "clinic-north", device: "m-1") == 4)
            #expect(try await store.eventCount(site: "spa-south", device: nil) == 0)
            let last = try await store.lastEventSequences()
            #expect(last[Self.device] == EventKey(epoch: 8, seq: 1), "the newest epoch's highest seq")
        }
    }

    @Test("a session's end applied before its start (replicas, replays) still ends completed, with both times", arguments: [TestDatabase.sqlite, .postgres])
    func sessionOrder(_ backend: TestDatabase) async throws {
        try await Self.withStore(backend) { store, _ in
            let started = Self.t0, ended = Self.t0.addingTimeInterval(600)
            var end = IngestBatch()
            end.sessions["s1"] = Self.session("s1", outcome: "completed", startedAt: nil, endedAt: ended)
            try await store.commit(end)
            var start = IngestBatch()
            start.sessions["s1"] = Self.session("s1", outcome: "running", startedAt: started, endedAt: nil)
            try await store.commit(start)
            let sessions = try await store.sessions(site: "clinic-north", device: "m-1", limit: 10)
            #expect(sessions == [Self.session("s1", outcome: "completed", startedAt: started, endedAt: ended)])
            #expect(try await store.sessionsStarted(site: "clinic-north", since: started) == 1)
            #expect(try await store.sessionsStarted(site: "clinic-north", since: ended) == 0)
        }
    }

    @Test("gaps: seqs missing below each epoch's highest are found, recent epochs only, at most the limit", arguments: [TestDatabase.sqlite, .postgres])
    func missing(_ backend: TestDatabase) async throws {
        try await Self.withStore(backend) { store, _ in
            var batch = IngestBatch()
            batch.events = [1, 2, 5, 9].map { Self.event(.faultCleared, session: nil, seq: $0, at: 3600) }
                + [3].map { Self.event(.faultCleared, session: nil, epoch: 3, seq: $0, at: 0) }  // an old epoch: 1 and 2 missing, but too old
            try await store.commit(batch)
            let now = Self.t0.addingTimeInterval(3600 + 60)
            let found = try await store.missingEvents(within: 600, limit: 100, now: now)
            #expect(found[Self.device]?.map(\.seq) == [3, 4, 6, 7, 8])
            #expect(found[Self.device]?.allSatisfy { $0.epoch == 7 } == true)
            #expect(try await store.missingEvents(within: 600, limit: 2, now: now)[Self.device]?.count == 2)
        }
    }

    @Test("pain-signal aborts are counted by site and program within the window", arguments: [TestDatabase.sqlite, .postgres])
    func painSignals(_ backend: TestDatabase) async throws {
        try await Self.withStore(backend) { store, _ in
            var batch = IngestBatch()
            batch.events = [Self.event(.sessionAborted, session: "a", seq: 1, reason: .painSignal, at: 0),
                            Self.event(.sessionAborted, session: "b", seq: 2, reason: .painSignal, at: 100),
                            Self.event(.sessionAborted, session: "c", seq: 3, reason: .remoteStop, at: 100)]
            try await store.commit(batch)
            #expect(try await store.painSignalAborts(since: Self.t0) == [PainSignalCount(site: "clinic-north", program: "calf_relief", count: 2)])
            #expect(try await store.painSignalAborts(since: Self.t0.addingTimeInterval(50)).first?.count == 1)
        }
    }

    @Test("alerts, commands, rollouts, usage, device rows and the audit log round-trip", arguments: [TestDatabase.sqlite, .postgres])
    func roundTrips(_ backend: TestDatabase) async throws {
        try await Self.withStore(backend) { store, location in
            let id = try await store.insertAlert(site: "clinic-north", device: "m-1", type: "offline", severity: .critical, message: "gone", at: Self.t0)
            let other = try await store.insertAlert(site: "spa-south", device: nil, type: "pain_signals", severity: .warning, message: "too high?", at: Self.t0)
            #expect(other > id)
            try await store.clearAlert(id: id, at: Self.t0.addingTimeInterval(5))
            let acked = try await store.acknowledgeAlert(id: other, by: "desk", at: Self.t0.addingTimeInterval(6))
            #expect(acked?.acknowledgedBy == "desk" && acked?.device == nil)
            #expect(try await store.acknowledgeAlert(id: 999_999, by: "desk", at: Self.t0) == nil)
            #expect(try await store.alerts(activeOnly: true, limit: 10).map(\.id) == [other])
            #expect(try await store.alerts(activeOnly: false, limit: 10).map(\.id) == [other, id])
            #expect(try await store.alerts(activeOnly: false, limit: 10).last?.clearedAt == Self.t0.addingTimeInterval(5))

            var command = CommandRecord(id: "cmd-1", action: "ping", params: .object([:]), createdBy: "desk", createdAt: Self.t0,
                                        expiresAt: Self.t0.addingTimeInterval(60),
                                        results: [CommandTargetResult(site: "clinic-north", device: "m-1", state: .queued, nonce: "n1")])
            try await store.saveCommand(command)
            #expect(try await store.unfinishedCommands().map(\.id) == ["cmd-1"])
            command.results[0].state = .succeeded
            var batch = IngestBatch()
            batch.commands[command.id] = command
            batch.audits = [AuditDraft(at: Self.t0, actor: "desk", action: "command.ping.finished", targets: "clinic-north/m-1", outcome: "1 succeeded")]
            batch.devices[Self.device] = Self.row(Self.device)
            // A row that no longer decodes (an older or damaged document) is skipped, not an error.
            batch.devices[try DeviceAddress(site: "clinic-north", device: "m-9")] = Data(#"{"site":"clinic-north","device":"m-9"}"#.utf8)
            batch.usage[Self.device] = (Usage(sessions: SessionCounts(started: 2)), Usage(sessions: SessionCounts(started: 3)))
            try await store.commit(batch)
            #expect(try await store.unfinishedCommands().isEmpty)
            #expect(try await store.command(id: "cmd-1") == command, "the nonce is kept with the record")
            #expect(try await store.recentCommands(limit: 5).map(\.id) == ["cmd-1"])
            #expect(try await store.auditEntries(limit: 5).map(\.action) == ["command.ping.finished"])
            #expect(try await store.loadDevices().map(\.device) == ["m-1"], "the row that does not decode is skipped")
            let usage = try await store.loadUsage()
            #expect(usage == [StoredUsage(address: Self.device, last: Usage(sessions: SessionCounts(started: 2)), total: Usage(sessions: SessionCounts(started: 3)))])
            #expect(try await store.rollouts().isEmpty)
            _ = location
        }
    }

    @Test("a NUL in a device's text fields is stored, not a failed batch that blocks every later one", arguments: [TestDatabase.sqlite, .postgres])
    func nulInText(_ backend: TestDatabase) async throws {
        try await Self.withStore(backend) { store, _ in
            var batch = IngestBatch()
            let stamped = Stamped(Event(type: .sessionAborted, sessionID: "s\u{0}1", program: "calf\u{0}", reason: SessionAbortReason(rawValue: "pain\u{0}")),
                                  envelope: Envelope(ts: Self.t0, epoch: 7, seq: 1))
            batch.events = [(Self.device, stamped, try FleetJSON.encode(stamped))]
            batch.sessions["s\u{0}1"] = SessionRecord(sessionID: "s\u{0}1", site: "clinic-north", device: "m-1", program: "calf\u{0}",
                                                    startedAt: nil, endedAt: Self.t0, outcome: "aborted", reason: "pain\u{0}")
            batch.audits = [AuditDraft(actor: "a\u{0}", action: "x", targets: "t", outcome: "o", detail: "\u{0}")]
            #expect(try await store.commit(batch).count == 1)
            _ = try await store.insertAlert(site: "clinic-north", device: "m-1", type: "fault", severity: .critical, message: "fault \u{0}", at: Self.t0)
            var next = IngestBatch()
            next.events = [Self.event(.sessionStarted, session: "s2", seq: 2)]
            #expect(try await store.commit(next).count == 1, "the next batch goes in too")
            #expect(try await store.eventCount(site: nil, device: nil) == 2)
        }
    }

    @Test("a finished command record is never overwritten by an unfinished one (a late write from a console that lost the lease)", arguments: [TestDatabase.sqlite, .postgres])
    func finishedCommandsStayFinished(_ backend: TestDatabase) async throws {
        try await Self.withStore(backend) { store, _ in
            var command = CommandRecord(id: "cmd-2", action: "ping", params: .object([:]), createdBy: "desk", createdAt: Self.t0,
                                        expiresAt: Self.t0.addingTimeInterval(60),
                                        results: [CommandTargetResult(site: "clinic-north", device: "m-1", state: .sent)])
            let stale = command
            command.results[0].state = .succeeded
            try await store.saveCommand(command)
            try await store.saveCommand(stale)
            var batch = IngestBatch()
            batch.commands[stale.id] = stale
            try await store.commit(batch)
            #expect(try await store.command(id: "cmd-2")?.results.first?.state == .succeeded)
            #expect(try await store.unfinishedCommands().isEmpty)
        }
    }

    struct Refusal: Error, Equatable { var why: String }

    @Test("a rollout update that throws rolls back and hands its caller the body's own error (a conflict stays a conflict)", arguments: [TestDatabase.sqlite, .postgres])
    func rolloutUpdateErrors(_ backend: TestDatabase) async throws {
        try await Self.withStore(backend) { store, _ in
            let error = await #expect(throws: Refusal.self) {
                try await store.updateRollouts { (all: inout [Rollout]) -> Int in
                    throw Refusal(why: "overlaps ro-1")
                }
            }
            #expect(error == Refusal(why: "overlaps ro-1"))
            let count = try await store.updateRollouts { all in all.count }
            #expect(count == 0, "nothing was saved")
        }
    }

    @Test("leases: one holder at a time, renewed by its holder, taken over once expired or released", arguments: [TestDatabase.sqlite, .postgres])
    func leases(_ backend: TestDatabase) async throws {
        try await Self.withStore(backend) { store, _ in
            #expect(try await store.acquireLease("coordinator", holder: "r1", for: 30))
            #expect(try await store.acquireLease("coordinator", holder: "r2", for: 30) == false, "held by r1")
            #expect(try await store.acquireLease("coordinator", holder: "r1", for: 30), "renewed by its holder")
            #expect(try await store.acquireLease("other", holder: "r2", for: 30), "another lease is independent")
            try await store.releaseLease("coordinator", holder: "r2")
            #expect(try await store.acquireLease("coordinator", holder: "r2", for: 30) == false, "only the holder releases")
            try await store.releaseLease("coordinator", holder: "r1")
            #expect(try await store.acquireLease("coordinator", holder: "r2", for: 0.2), "released: free")
            try await waitUntil(timeout: .seconds(5), pollEvery: .milliseconds(100), "r2's lease expired and r1 took it") {
                try await store.acquireLease("coordinator", holder: "r1", for: 30)
            }
        }
    }

    @Test("device rows carry their writer and time: a replica reads the others' rows since a time, never its own", arguments: [TestDatabase.sqlite, .postgres])
    func deviceRowsChanged(_ backend: TestDatabase) async throws {
        try await Self.withStore(backend) { store, _ in
            var a = IngestBatch()
            a.writer = "r1"
            a.devices[Self.device] = Self.row(Self.device)
            try await store.commit(a)
            var b = IngestBatch()
            b.writer = "r2"
            let other = try DeviceAddress(site: "clinic-north", device: "m-2")
            b.devices[other] = Self.row(other)
            try await store.commit(b)
            let seenByR1 = try await store.devicesChanged(since: 0, excludingWriter: "r1")
            #expect(seenByR1.records.map(\.device) == ["m-2"])
            #expect(seenByR1.newest > 0)
            #expect(try await store.devicesChanged(since: seenByR1.newest, excludingWriter: "r1").records.isEmpty, "nothing newer since")
            #expect(try await store.devicesChanged(since: 0, excludingWriter: "r2").records.count == 1)
        }
    }

    @Test("a store opened again finds everything (migrations run once)", arguments: [TestDatabase.sqlite, .postgres])
    func reopen(_ backend: TestDatabase) async throws {
        try await Self.withStore(backend) { store, location in
            var batch = IngestBatch()
            batch.events = [Self.event(.sessionStarted, session: "s1", seq: 1)]
            try await store.commit(batch)
            let again = try await StoreLocation.parse(location).open(logger: Logger(label: "store-test"))
            #expect(try await again.eventCount(site: nil, device: nil) == 1)
            await again.close()
        }
    }

    @Test("on SQLite only the writer gets the large page cache; the API's readers keep SQLite's default, so memory stays bounded")
    func sqliteCaches() async throws {
        let dir = try TemporaryDirectory(prefix: "console-cache")
        let store = try SQLiteStore(path: dir.url.appendingPathComponent("console.sqlite").path)
        let writer = try await store.pool.write { db in try Int.fetchOne(db, sql: "PRAGMA cache_size") }
        let reader = try await store.pool.read { db in try Int.fetchOne(db, sql: "PRAGMA cache_size") }
        let checkpoint = try await store.pool.write { db in try Int.fetchOne(db, sql: "PRAGMA wal_autocheckpoint") }
        #expect(writer == -SQLiteStore.writerCacheKiB)
        #expect(reader == -2000, "SQLite's default: 2,000 KiB")
        #expect(checkpoint == 8000)
        await store.close()
    }
}

// Issue 20, item 10: forgetting a device, on both stores.
extension ConsoleStoreTests {
    @Test("forgetting a device deletes its events (their keys can be stored again), resets its usage baseline keeping the total, clears its active alerts, writes its row; the rest stays", arguments: [TestDatabase.sqlite, .postgres])
    func forgetDevice(_ backend: TestDatabase) async throws {
        try await Self.withStore(backend) { store, _ in
            let other = try DeviceAddress(site: "clinic-north", device: "m-2")
            var batch = IngestBatch()
            batch.events = [Self.event(.sessionStarted, session: "s1", epoch: 9_007_199_254_740_992, seq: 1),
                            Self.event(.sessionCompleted, session: "s1", epoch: 9_007_199_254_740_992, seq: 2)]
            let (_, otherEvent, otherPayload) = Self.event(.sessionStarted, session: "s2", epoch: 3, seq: 1)
            batch.events.append((other, otherEvent, otherPayload))
            batch.sessions["s1"] = Self.session("s1", outcome: "completed", startedAt: Self.t0, endedAt: Self.t0.addingTimeInterval(60))
            let used = Usage(sessions: SessionCounts(started: 5, completed: 4, aborted: [:]))
            batch.usage[Self.device] = (last: used, total: used)
            batch.usage[other] = (last: used, total: used)
            batch.devices[Self.device] = Self.row(Self.device) { $0.epoch = 9_007_199_254_740_992 }
            try await store.commit(batch)
            let mine = try await store.insertAlert(site: "clinic-north", device: "m-1", type: "offline", severity: .critical, message: "gone", at: Self.t0)
            let theirs = try await store.insertAlert(site: "clinic-north", device: "m-2", type: "offline", severity: .critical, message: "gone", at: Self.t0)
            try await store.audit(AuditDraft(actor: "admin", action: "command.ping", targets: "clinic-north/m-1", outcome: "accepted"))

            var tombstone = DeviceRecord(site: "clinic-north", device: "m-1")
            tombstone.revokedAt = Self.t0
            let at = Self.t0.addingTimeInterval(3600)
            let counts = try await store.forgetDevice(Self.device, record: tombstone, writer: "console", at: at)
            #expect(counts == ForgetCounts(events: 2, alerts: 1, usageBaselineReset: true))

            #expect(try await store.eventCount(site: "clinic-north", device: "m-1") == 0)
            #expect(try await store.eventCount(site: "clinic-north", device: "m-2") == 1, "another device's events stay")
            let last = try await store.lastEventSequences()
            #expect(last[Self.device] == nil && last[other] == EventKey(epoch: 3, seq: 1), "the 2^53 epoch is gone from the start-up read")
            let rows = try await store.loadDevices()
            #expect(rows.map(\.device) == ["m-1"] && rows.first?.revokedAt == Self.t0 && rows.first?.epoch == nil, "the row is the tombstone")
            let usage = try await store.loadUsage()
            let m1 = try #require(usage.first { $0.address == Self.device })
            #expect(m1.last == Usage(), "the baseline is zero counters")
            #expect(m1.total == used, "the total stays in the site's totals")
            let m2 = try #require(usage.first { $0.address == other })
            #expect(m2.last == used)
            let alerts = try await store.alerts(activeOnly: false, limit: 10)
            #expect(alerts.first { $0.id == mine }?.clearedAt == at, "its active alert is cleared, kept in the history")
            #expect(alerts.first { $0.id == theirs }?.clearedAt == nil)
            #expect(try await store.sessions(site: "clinic-north", device: "m-1", limit: 10).map(\.sessionID) == ["s1"], "past sessions stay")
            #expect(try await store.auditEntries(limit: 10).count == 1, "the audit log stays")

            // A re-provisioned device numbers its events from 1 again: the same keys are new.
            var again = IngestBatch()
            again.events = [Self.event(.sessionStarted, session: "s3", epoch: 1, seq: 1)]
            #expect(try await store.commit(again).count == 1)
            #expect(try await store.lastEventSequences()[Self.device] == EventKey(epoch: 1, seq: 1))
        }
    }
}

// The two migration lists cannot drift: both stores are compared by what they make.
extension ConsoleStoreTests {
    @Test("SQLite and PostgreSQL migrate to the same schema: migrations, tables, columns (type, nullability), primary keys, unique constraints, indexes (partial ones with their predicate)")
    func schemasMatch() async throws {
        let directory = try TemporaryDirectory(prefix: "console-schema")
        defer { directory.remove() }
        let sqlite = try SQLiteStore(path: directory.file("console.sqlite").path)
        let fromSQLite: Set<String>
        do { fromSQLite = try await StoreSchema.facts(sqlite) } catch {
            await sqlite.close()
            throw error
        }
        await sqlite.close()
        guard case .postgres(let location) = try StoreLocation.parse(try await PostgresServer.shared().createDatabase()) else {
            Issue.record("the test server's URL is not a PostgreSQL location")
            return
        }
        let postgres = try await PostgresStore(location: location, logger: Logger(label: "schema-test"))
        let fromPostgres: Set<String>
        do { fromPostgres = try await StoreSchema.facts(postgres) } catch {
            await postgres.close()
            throw error
        }
        await postgres.close()

        // The reader sees what it must compare.
        #expect(fromSQLite.contains("index event_aborted_ts on event(ts) where type = 'session_aborted'"))
        #expect(fromSQLite.contains("unique event(site, device, epoch, seq)"))
        #expect(fromSQLite.contains("primary key event_floor(site, device, epoch)"))
        #expect(fromSQLite.contains("column device.writer: text, not null"))
        #expect(fromSQLite.filter { $0.hasPrefix("migration ") }.count == PostgresStore.migrations.count)
        let onlySQLite = fromSQLite.subtracting(fromPostgres).sorted()
        let onlyPostgres = fromPostgres.subtracting(fromSQLite).sorted()
        #expect(onlySQLite.isEmpty, "in SQLite's schema only:\n\(onlySQLite.joined(separator: "\n"))")
        #expect(onlyPostgres.isEmpty, "in PostgreSQL's schema only:\n\(onlyPostgres.joined(separator: "\n"))")
    }
}
