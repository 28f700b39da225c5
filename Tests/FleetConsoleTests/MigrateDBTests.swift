@testable import FleetConsole
import FleetProtocol
import FleetTestSupport
import Foundation
import Logging
import Testing

/// `fleet-console migrate-db`: the built CLI copies a populated SQLite
/// store into a fresh database on the shared test PostgreSQL server, and
/// the PostgreSQL store then answers as the SQLite one did.
@Suite("migrate-db: a SQLite console database moved to PostgreSQL, every row accounted for", .tags(.e2e, .postgres))
struct MigrateDBTests {
    static let t0 = Date(timeIntervalSince1970: 1_790_000_000)
    static let devices = [try! DeviceAddress(site: "clinic-north", device: "m-1"), try! DeviceAddress(site: "clinic-north", device: "m-2"),
                          try! DeviceAddress(site: "spa-south", device: "s-1")]
    /// Events per (device, epoch): 2,500 in all, so the event table takes three statements.
    static let eventsPerEpoch: [(device: Int, epoch: UInt64, count: Int)] = [(0, 3, 400), (0, 4, 600), (1, 7, 900), (2, 1, 250), (2, 2, 350)]
    static let tables = ["device", "event", "event_floor", "session", "usage_device", "usage_day", "alert", "command", "audit", "rollout"]

    /// What the SQLite store held, read back through ConsoleStore.
    struct Original {
        var eventCounts: [DeviceAddress: Int] = [:]
        var last: [DeviceAddress: EventKey] = [:]
        var sessions: [DeviceAddress: [SessionRecord]] = [:]
        var alerts: [AlertRecord] = []
        var command: CommandRecord
        var commands: [CommandRecord] = []
        var unfinished: [String] = []
        var audit: [AuditEntry] = []
        var rollouts: [Rollout] = []
        /// Device records, encoded again with sorted keys (DeviceRecord is not Equatable).
        var devices: Set<Data> = []
        var usage: [DeviceAddress: StoredUsage] = [:]
        var usageDays: [UsageDay] = []
        var pain: [PainSignalCount] = []
    }

    static func event(_ device: DeviceAddress, epoch: UInt64, seq: UInt64) -> (DeviceAddress, Stamped<Event>, Data) {
        let type: EventType = seq % 50 == 1 ? .sessionStarted : seq % 50 == 0 ? .sessionAborted : .sessionStep
        let session = "\(device.device.rawValue)-\(epoch)-\((seq - 1) / 50)"
        let stamped = Stamped(Event(type: type, sessionID: session, program: "calf_relief", reason: type == .sessionAborted ? .painSignal : nil),
                              envelope: Envelope(ts: t0.addingTimeInterval(Double(epoch) * 100_000 + Double(seq)), epoch: epoch, seq: seq,
                                                 historical: seq % 3 == 0))
        return (device, stamped, try! FleetJSON.encode(stamped))
    }

    /// Fills a SQLite store at `path` with every kind of row the console keeps.
    static func populate(_ path: String) async throws -> Original {
        let store = try SQLiteStore(path: path)
        var events: [(DeviceAddress, Stamped<Event>, Data)] = []
        for (index, epoch, count) in eventsPerEpoch {
            events += (1...UInt64(count)).map { event(devices[index], epoch: epoch, seq: $0) }
        }
        for start in stride(from: 0, to: events.count, by: 500) {
            var batch = IngestBatch()
            batch.events = Array(events[start..<min(start + 500, events.count)])
            try await store.commit(batch)
        }
        var batch = IngestBatch()
        for (n, device) in devices.enumerated() {
            var record = DeviceRecord(site: device.site.rawValue, device: device.device.rawValue)
            record.telemetryGaps = n
            batch.devices[device] = try FleetJSON.encode(record)
            batch.usage[device] = (Usage(sessions: SessionCounts(started: UInt64(n + 2))), Usage(sessions: SessionCounts(started: UInt64(n + 5))))
            for s in 0..<3 {
                let id = "\(device.device.rawValue)-session-\(s)"
                let started = t0.addingTimeInterval(Double(n * 10_000 + s * 1000))
                batch.sessions[id] = SessionRecord(sessionID: id, site: device.site.rawValue, device: device.device.rawValue, program: s == 2 ? nil : "calf_relief",
                                                   startedAt: started, endedAt: s == 0 ? nil : started.addingTimeInterval(600),
                                                   outcome: s == 0 ? "running" : s == 1 ? "completed" : "aborted", reason: s == 2 ? "pain_signal" : nil)
            }
        }
        for day in ["2026-09-21", "2026-09-22"] {
            for site in ["clinic-north", "spa-south"] {
                batch.usageDays["\(site)/\(day)"] = UsageDay(site: site, day: day, sessions: SessionCounts(started: 4), minutes: ["program": ["calf_relief": 42.5]])
            }
        }
        var command = CommandRecord(id: "cmd-1", action: "start_session", params: .object(["program": .string("calf_relief")]), createdBy: "desk",
                                    createdAt: t0, expiresAt: t0.addingTimeInterval(60),
                                    results: [CommandTargetResult(site: "clinic-north", device: "m-1", state: .queued, nonce: "n1"),
                                              CommandTargetResult(site: "clinic-north", device: "m-2", state: .queued, nonce: "n2")])
        command.results[0].state = .succeeded
        command.results[1].state = .failed
        batch.commands[command.id] = command
        batch.audits = [AuditDraft(at: t0, actor: "desk", action: "command.start_session.finished", targets: "clinic-north", outcome: "1 succeeded, 1 failed", detail: "m-2 busy")]
        try await store.commit(batch)
        try await store.saveCommand(CommandRecord(id: "cmd-2", action: "ping", params: .object([:]), createdBy: "ops", createdAt: t0.addingTimeInterval(5),
                                                  expiresAt: t0.addingTimeInterval(65),
                                                  results: [CommandTargetResult(site: "spa-south", device: "s-1", state: .queued, nonce: "n3")]))
        let cleared = try await store.insertAlert(site: "clinic-north", device: "m-1", type: "offline", severity: .critical, message: "gone", at: t0)
        let acknowledged = try await store.insertAlert(site: "spa-south", device: nil, type: "pain_signals", severity: .warning, message: "too high?", at: t0)
        _ = try await store.insertAlert(site: "clinic-north", device: "m-2", type: "overheat", severity: .warning, message: "motor 71 °C", at: t0)
        try await store.clearAlert(id: cleared, at: t0.addingTimeInterval(5))
        _ = try await store.acknowledgeAlert(id: acknowledged, by: "desk", at: t0.addingTimeInterval(6))
        for n in 0..<4 {
            try await store.audit(AuditDraft(at: t0.addingTimeInterval(Double(n)), actor: "ops", action: "alert.ack", targets: "alert \(n)", outcome: "ok",
                                             detail: n.isMultiple(of: 2) ? nil : "note \(n)"))
        }
        let document = try FleetJSON.makeDecoder().decode(RolloutDocument.self, from: RolloutDocument.json(fromYAML: """
            name: gentler calf ceiling
            config: {max_session_minutes: 18}
            targets: {sites: [clinic-north]}
            waves: {canary: 1, percentages: [100]}
            """))
        try await store.saveRollout(Rollout(id: "r-1", document: document, targets: Array(devices.prefix(2)), createdBy: "ops", now: t0))
        var finished = Rollout(id: "r-2", document: document, targets: Array(devices.prefix(1)), createdBy: "ops", now: t0.addingTimeInterval(10))
        finished.state = .completed
        try await store.saveRollout(finished)

        // An older epoch of s-1 that retention took: a floor row to copy, the 2,500 events stay.
        var old = IngestBatch()
        old.events = (1...UInt64(100)).map { event(devices[2], epoch: 0, seq: $0) }
        try await store.commit(old)
        let pruned = try await store.prune(RetentionCutoffs(events: t0.addingTimeInterval(1000)), chunk: 40)
        #expect(pruned == PruneCounts(events: 100))
        let original = try await read(store, command: "cmd-1")
        await store.close()
        return original
    }

    /// Everything the checks compare, through the ConsoleStore API.
    static func read(_ store: any ConsoleStore, command id: String) async throws -> Original {
        var out = Original(command: try #require(try await store.command(id: id)))
        for device in devices {
            out.eventCounts[device] = try await store.eventCount(site: device.site.rawValue, device: device.device.rawValue)
            out.sessions[device] = try await store.sessions(site: device.site.rawValue, device: device.device.rawValue, limit: 100)
        }
        out.last = try await store.lastEventSequences()
        out.alerts = try await store.alerts(activeOnly: false, limit: 100)
        out.commands = try await store.recentCommands(limit: 100)
        out.unfinished = try await store.unfinishedCommands().map(\.id)
        out.audit = try await store.auditEntries(limit: 100)
        out.rollouts = try await store.rollouts()
        out.devices = Set(try await store.loadDevices().map { try FleetJSON.encode($0, sortedKeys: true) })
        out.usage = Dictionary(uniqueKeysWithValues: try await store.loadUsage().map { ($0.address, $0) })
        out.usageDays = try await store.loadUsageDays().sorted { ($0.site, $0.day) < ($1.site, $1.day) }
        out.pain = try await store.painSignalAborts(since: t0).sorted { $0.site < $1.site }
        return out
    }

    static func migrate(from: String, to: String, json: Bool = false) async throws -> ProcessRunner.Completed {
        try await ProcessRunner.run(try ConsoleProcess.executable(), arguments: ["migrate-db", "--from", from, "--to", to] + (json ? ["--json"] : []),
                                    timeout: .seconds(120))
    }

    /// `TABLE SQLITE POSTGRESQL` rows of the printed table, by table.
    static func printedCounts(_ output: String) -> [String: (Int, Int)] {
        var out: [String: (Int, Int)] = [:]
        for line in output.split(separator: "\n") {
            let cells = line.split(separator: " ", omittingEmptySubsequences: true)
            if cells.count == 3, let a = Int(cells[1]), let b = Int(cells[2]) { out[String(cells[0])] = (a, b) }
        }
        return out
    }

    @Test("every table is copied with equal counts; the PostgreSQL store then answers as the SQLite one did, and new alerts number after the copied ones")
    func copiesEverything() async throws {
        let directory = try TemporaryDirectory(prefix: "migrate-db")
        defer { directory.remove() }
        let path = directory.file("console.sqlite").path
        let original = try await Self.populate(path)
        #expect(original.eventCounts.values.reduce(0, +) == 2500)
        #expect(original.alerts.count == 3 && original.rollouts.count == 2 && original.commands.count == 2)
        let url = try await PostgresServer.shared().createDatabase()

        let run = try await Self.migrate(from: path, to: url)
        try #require(run.status == .exited(0), "\(run)")
        let printed = Self.printedCounts(run.standardOutput)
        let expected = ["device": 3, "event": 2500, "event_floor": 1, "session": 9, "usage_device": 3, "usage_day": 4, "alert": 3, "command": 2, "audit": 5, "rollout": 2]
        #expect(Set(printed.keys) == Set(Self.tables), "one row per table: \(run.standardOutput)")
        for (table, rows) in expected {
            #expect(printed[table].map { $0.0 == rows && $0.1 == rows } == true, "\(table): \(run.standardOutput)")
        }
        #expect(run.standardError.contains("event: 2500/2500 (100%)"), "progress on stderr: \(run.standardError)")
        #expect(run.standardError.contains("event: 1000/2500 (40%)"), "progress within a big table: \(run.standardError)")

        try await ConsoleStoreAccess.withStore(url) { (store: any ConsoleStore) async throws in
            let copied = try await Self.read(store, command: "cmd-1")
            #expect(copied.eventCounts == original.eventCounts)
            #expect(copied.last == original.last)
            #expect(copied.last[Self.devices[0]] == EventKey(epoch: 4, seq: 600))
            #expect(copied.sessions == original.sessions)
            #expect(copied.alerts == original.alerts, "ids, cleared and acknowledged fields kept")
            #expect(copied.alerts.contains { $0.clearedAt == Self.t0.addingTimeInterval(5) && $0.acknowledgedBy == nil })
            #expect(copied.alerts.contains { $0.acknowledgedBy == "desk" && $0.acknowledgedAt == Self.t0.addingTimeInterval(6) && $0.clearedAt == nil })
            #expect(copied.command == original.command)
            #expect(copied.commands == original.commands)
            #expect(copied.unfinished == original.unfinished && original.unfinished == ["cmd-2"], "the finished flag (a boolean) survived")
            #expect(copied.audit == original.audit)
            #expect(copied.rollouts == original.rollouts)
            #expect(copied.devices == original.devices && copied.usage == original.usage && copied.usageDays == original.usageDays)
            #expect(original.devices.count == 3 && original.usage.count == 3 && original.usageDays.count == 4, "every row decoded")
            #expect(copied.pain == original.pain && !copied.pain.isEmpty)

            let next = try await store.insertAlert(site: "clinic-north", device: "m-1", type: "offline", severity: .critical, message: "again", at: Date())
            #expect(next > original.alerts.map(\.id).max()!, "the alert sequence continues after the copied ids")
            var more = IngestBatch()
            more.events = [Self.event(Self.devices[0], epoch: 5, seq: 1)]
            #expect(try await store.commit(more).count == 1, "new events go in after the copied ones")
            try await store.audit(AuditDraft(actor: "ops", action: "after", targets: "-", outcome: "ok"))
            let audit = try await store.auditEntries(limit: 1)
            #expect(audit.first?.action == "after" && audit.first!.id > original.audit.map(\.id).max()!)
        }
    }

    @Test("a second run into the now non-empty database exits non-zero naming the table, and changes nothing")
    func refusesNonEmpty() async throws {
        let directory = try TemporaryDirectory(prefix: "migrate-db")
        defer { directory.remove() }
        let path = directory.file("console.sqlite").path
        let original = try await Self.populate(path)
        let url = try await PostgresServer.shared().createDatabase()
        let first = try await Self.migrate(from: path, to: url, json: true)
        try #require(first.status == .exited(0), "\(first)")
        struct Report: Decodable { var rows: Int; var tables: [StoreCopier.TableCount] }
        let report = try JSONDecoder().decode(Report.self, from: Data(first.standardOutput.utf8))
        #expect(report.tables.map(\.table) == Self.tables)
        #expect(report.tables.allSatisfy { $0.sqlite == $0.postgres } && report.rows == report.tables.reduce(0) { $0 + $1.sqlite })

        let second = try await Self.migrate(from: path, to: url)
        #expect(second.status != .exited(0), "\(second)")
        #expect(second.standardError.contains("device has 3 rows"), "names the table and its rows: \(second.standardError)")
        #expect(second.standardError.contains("event has 2500 rows"), "\(second.standardError)")
        #expect(second.standardOutput.isEmpty, "\(second)")
        try await ConsoleStoreAccess.withStore(url) { (store: any ConsoleStore) async throws in
            #expect(try await store.eventCount(site: nil, device: nil) == 2500)
            #expect(try await store.alerts(activeOnly: false, limit: 100).count == original.alerts.count)
            #expect(try await store.auditEntries(limit: 100).count == original.audit.count)
        }
    }

    @Test("a --to that is not a postgres:// URL exits 2 naming --to and the expected form")
    func badDestination() async throws {
        let directory = try TemporaryDirectory(prefix: "migrate-db")
        defer { directory.remove() }
        for bad in ["/var/lib/console.sqlite", "postgres://127.0.0.1:5432/fleet", "postgres://fleet@127.0.0.1:5432/"] {
            let run = try await Self.migrate(from: directory.file("console.sqlite").path, to: bad)
            #expect(run.status == .exited(2), "\(bad): \(run)")
            #expect(run.standardError.contains("--to"), "\(bad): \(run.standardError)")
            #expect(run.standardError.contains("postgres://USER"), "\(bad): \(run.standardError)")
        }
        #expect(!FileManager.default.fileExists(atPath: directory.file("console.sqlite").path), "nothing created")
    }

    @Test("a --from file that does not exist exits non-zero naming the path, and no empty database is created")
    func missingSource() async throws {
        let directory = try TemporaryDirectory(prefix: "migrate-db")
        defer { directory.remove() }
        let path = directory.file("no-such-console.sqlite").path
        let url = try await PostgresServer.shared().createDatabase()
        let run = try await Self.migrate(from: path, to: url)
        #expect(run.status == .exited(1), "\(run)")
        #expect(run.standardError.contains(path), "\(run.standardError)")
        #expect(run.standardError.contains("does not exist"), "\(run.standardError)")
        #expect(!FileManager.default.fileExists(atPath: path), "the missing file is not created")
    }
}
