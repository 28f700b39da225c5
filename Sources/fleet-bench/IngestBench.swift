import ArgumentParser
import FleetProtocol
import FleetTestSupport
import Foundation
import Mosquitto
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

// MARK: console ingest

struct IngestBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Console ingest and commit vs mosquitto_sub counting the same stream; console RSS with N devices; with --database postgres, also 1, 2, 3… replicas on one database.")
    @Option(help: "Simulated devices publishing.") var devices = 1000
    @Option(help: "Messages per device (QoS 1).") var events = 50
    @Option(help: "What the devices publish: events (each stored as a row) or telemetry (applied to the fleet model; only the device rows are written). Both at QoS 1, so every message arrives and the counts are exact; agents send telemetry at QoS 0.")
    var kind = "events"
    @Option(help: "Publishing threads.") var threads = 2
    @Option(help: "The consoles' database: sqlite (a file of the one console) or postgres (one PostgreSQL server for the run, a fresh database per replica count).")
    var database = "sqlite"
    @Option(help: "Replica counts to measure one after another, e.g. 1,2,3; more than 1 needs --database postgres.")
    var replicas = "1"

    /// The bench's PostgreSQL: durable, without an fsync per commit, as the
    /// console's SQLite runs (WAL, synchronous=NORMAL). The fixture's test
    /// defaults turn fsync and full_page_writes off; these turn them on.
    static let postgresSettings = ["fsync": "on", "synchronous_commit": "off", "full_page_writes": "on"]

    /// What one replica count measured.
    struct Outcome {
        let replicas: Int
        let database: String
        let published: Duration
        let subDone: Duration
        let consoleDone: Duration
        /// When the consoles had received (not yet committed) as many messages as were published.
        let consoleReceived: Duration?
        /// Per console: its name, the events it stored, whether it held the coordinator lease.
        let shares: [(name: String, stored: Int, coordinator: Bool)]
        let duplicates: Int
        /// Rows in PostgreSQL's event table afterwards (nil on SQLite).
        let rows: Int?
        let consoleCPU: Double
        /// The PostgreSQL server's CPU seconds, all its processes (nil on SQLite).
        let postgresCPU: Double?
        let rssMiB: [Double]
        /// How much the database grew over the run, in bytes (SQLite: the
        /// file and its WAL; PostgreSQL: `pg_database_size`).
        let diskGrowth: Int64?

        var stored: Int { shares.reduce(0) { $0 + $1.stored } }
    }

    func run() async throws {
        func refuse(_ message: String) -> ExitCode {
            FileHandle.standardError.write(Data("fleet-bench ingest: \(message)\n".utf8))
            return ExitCode(2)
        }
        guard kind == "events" || kind == "telemetry" else {
            throw refuse("--kind \(kind) is not known; expected events or telemetry")
        }
        guard database == "sqlite" || database == "postgres" else {
            throw refuse("--database \(database) is not known; expected sqlite or postgres")
        }
        let counts = replicas.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !counts.isEmpty, counts.allSatisfy({ ($0 ?? 0) >= 1 }) else {
            throw refuse("--replicas \(replicas) is not a list of replica counts; expected positive whole numbers separated by commas, e.g. 1,2,3")
        }
        let replicaCounts = counts.compactMap { $0 }
        if database == "sqlite", let many = replicaCounts.first(where: { $0 > 1 }) {
            throw refuse("--replicas \(replicas) asks for \(many) consoles on one database, and replicas share a PostgreSQL database (SQLite serves one console); add --database postgres")
        }

        let server = database == "postgres" ? try await PostgresServer.start(database: "postgres", settings: Self.postgresSettings) : nil
        defer { server?.stopNow() }
        var outcomes: [Outcome] = []
        for (index, count) in replicaCounts.enumerated() {
            if let server {
                let name = "ingest_\(index + 1)_\(count)_replicas"
                let url = try await server.createDatabase(name)
                let outcome = try await measure(replicas: count, postgres: (server, name, url))
                printDetails(outcome)
                outcomes.append(outcome)
                // Each configuration starts from a server with nothing of the one before to write back.
                try await server.psql("DROP DATABASE \"\(name)\" WITH (FORCE)", database: "postgres")
                try await server.psql("CHECKPOINT", database: "postgres")
            } else {
                let outcome = try await measure(replicas: count, postgres: nil)
                printDetails(outcome)
                outcomes.append(outcome)
            }
        }
        if outcomes.count > 1 || database == "postgres" {
            printSummary(outcomes)
        }
    }

    /// One configuration: a fresh broker, `replicas` consoles (replicas r1…rN
    /// on PostgreSQL, one plain console on SQLite), devices × events QoS 1
    /// events published, mosquitto_sub counting the same stream.
    func measure(replicas count: Int, postgres: (server: PostgresServer, name: String, url: String)?) async throws -> Outcome {
        let names = postgres == nil ? ["console"] : (1...count).map { "r\($0)" }
        let scenario = try await FleetScenario(brokerConfig: "max_queued_messages 0\nmax_inflight_messages 0\nset_tcp_nodelay true\n",
                                               database: postgres?.url,
                                               consoleArguments: postgres == nil ? [[]] : names.map { ["--replica", $0] })
        defer { scenario.stop() }
        let broker = scenario.broker, consoles = scenario.consoles
        let postmaster = postgres?.server.processIdentifier

        let total = devices * events
        // The reference: mosquitto_sub counting the same event stream. Started
        // before the devices' thousand sockets exist: Foundation's Process.run
        // reads past the end of a buffer while it lists /proc/self/fd, and with
        // over a thousand descriptors open that crashed this bench now and then
        // (swift-corelibs-foundation#5472, fixed after Swift 6.3.1).
        let sub = try ProcessRunner.start(tool: "mosquitto_sub", arguments: ["-h", broker.host, "-p", "\(broker.port)", "-q", "1", "-t", "massage/v1/+/+/\(kind)", "-C", "\(total)"])
        defer { sub.kill() }

        // Devices connect first (not timed).
        let group = MQTTEventLoopGroup(numberOfThreads: threads)
        var clients: [MQTTClient] = []
        for i in 0..<devices {
            var c = MQTTConfiguration(host: broker.host, port: broker.port, clientID: "bench-dev-\(i)")
            c.sendMaximum = 1000
            let client = try MQTTClient(configuration: c, eventLoopGroup: group)
            try await client.connect()
            clients.append(client)
        }
        try await Task.sleep(for: .milliseconds(500)) // let mosquitto_sub subscribe (it prints nothing until messages arrive)

        func consoleCPU() -> Double { consoles.reduce(0) { $0 + ProcessStatistics.cpuSeconds($1.process.processIdentifier) } }
        let consoleCPU0 = consoleCPU()
        let ingested0 = await scenario.metricSum("fleet_ingest_messages_total") ?? 0
        let postgresCPU0 = postmaster.map(cpuSecondsWithChildren)
        func databaseBytes() async throws -> Int64 {
            if let postgres {
                let size = try await postgres.server.psql("select pg_database_size(current_database())", database: postgres.name)
                return Int64(size.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
            }
            let file = scenario.directory.url.appendingPathComponent("console.sqlite").path
            return [file, file + "-wal"].reduce(0) { sum, path in
                sum + ((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value ?? 0)
            }
        }
        // (Before the devices' sockets exist for psql; see mosquitto_sub above.)
        let disk0 = postgres == nil ? nil : try await databaseBytes()
        let clock = ContinuousClock()
        let start = clock.now
        let payloads: [[[UInt8]]] = try (0..<devices).map { d in
            try (1...events).map { seq in
                if kind == "telemetry" { return try Self.telemetry(device: d, seq: seq) }
                return Array(try FleetJSON.encode(Stamped(Event(type: .sessionStep, sessionID: "s-\(d)", program: "calf-release", stepIndex: seq % 5, target: "calf", zone: "calf", technique: "kneading"),
                                                          envelope: Envelope(ts: Date(), epoch: 1, seq: UInt64(seq)))))
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for (d, client) in clients.enumerated() {
                tasks.addTask {
                    let topic = "massage/v1/site-\(d % 10)/dev-\(d)/\(kind)"
                    for p in payloads[d] { try await client.publish(topic, payload: p, qos: .atLeastOnce) }
                }
            }
            try await tasks.waitForAll()
        }
        let published = start.duration(to: clock.now)
        var subDone: Duration?
        var consoleDone: Duration?
        var consoleReceived: Duration?
        try await waitUntil(timeout: .seconds(300), pollEvery: .milliseconds(20), "both received \(total) events") {
            if subDone == nil, !sub.isRunning { subDone = start.duration(to: clock.now) }
            if consoleReceived == nil, let got = await scenario.metricSum("fleet_ingest_messages_total"), Int(got - ingested0) >= total {
                consoleReceived = start.duration(to: clock.now)
            }
            if kind == "telemetry" {
                consoleDone = consoleReceived // nothing to commit but the device rows
            } else if consoleDone == nil, let stored = await scenario.metricSum("fleet_events_stored_total"), Int(stored) >= total {
                consoleDone = start.duration(to: clock.now)
            }
            return subDone != nil && consoleDone != nil
        }
        let cpu = consoleCPU() - consoleCPU0
        let postgresCPU = postmaster.map(cpuSecondsWithChildren).map { $0 - (postgresCPU0 ?? 0) }
        var shares: [(name: String, stored: Int, coordinator: Bool)] = []
        for (name, console) in zip(names, consoles) {
            let stored = await scenario.metric("fleet_events_stored_total", of: console)
            let coordinator = await scenario.metric("fleet_coordinator", of: console)
            shares.append((name, Int(stored ?? -1), coordinator == 1))
        }
        let duplicates = Int(await scenario.metricSum("fleet_events_duplicate_total") ?? -1)
        let rss = consoles.map { ProcessStatistics.status($0.process.processIdentifier).rssMiB }
        for c in clients { await c.shutdown() } // before psql runs as a child (see mosquitto_sub above)
        let diskGrowth = try await databaseBytes() - (disk0 ?? 0) // a fresh SQLite file starts at nothing
        var rows: Int?
        if let postgres {
            let counted = try await postgres.server.psql("select count(*) from event", database: postgres.name)
            rows = Int(counted.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        }
        return Outcome(replicas: count, database: postgres == nil ? "SQLite" : "PostgreSQL", published: published, subDone: subDone!, consoleDone: consoleDone!,
                       consoleReceived: consoleReceived,
                       shares: shares, duplicates: duplicates, rows: rows, consoleCPU: cpu, postgresCPU: postgresCPU, rssMiB: rss,
                       diskGrowth: diskGrowth)
    }

    /// One device's telemetry during a session, as an agent sends it every second.
    static func telemetry(device d: Int, seq: Int) throws -> [UInt8] {
        let body = Telemetry(sessionState: .running, sessionID: "s-\(d)", program: "calf-release",
                             step: CurrentStep(index: seq % 5, target: "calf", zone: "calf", technique: "kneading", intensity: 3, remainingSeconds: 40),
                             elapsedSeconds: Double(seq), pressureMMHg: ["calf": Double(30 + seq % 20), "foot": 0], motorTempC: 31.5,
                             breathingBPM: 6, intervalSeconds: 1)
        return Array(try FleetJSON.encode(Stamped(body, envelope: Envelope(ts: Date(), epoch: 1, seq: UInt64(seq)))))
    }

    /// The table of one configuration; on SQLite with one console, the table this bench always printed.
    func printDetails(_ o: Outcome) {
        let total = devices * events
        let ours = Double(total) / o.consoleDone.seconds
        let reference = Double(total) / o.subDone.seconds
        let several = o.replicas > 1
        let consoles = several ? "consoles (\(o.replicas) replicas)" : "console"
        let title = o.rows == nil ? "" : ", \(o.database), \(o.replicas) replica\(several ? "s" : "")"
        print("| console ingest (\(devices) devices × \(events) QoS 1 \(kind == "telemetry" ? "telemetry messages" : "events")\(title)) | value |")
        print("| --- | ---: |")
        print("| published in | \(String(format: "%.2f", o.published.seconds)) s |")
        print("| mosquitto_sub received all | \(String(format: "%.2f", o.subDone.seconds)) s → \(Int(reference)) msg/s |")
        print("| \(consoles) \(kind == "telemetry" ? "received and applied" : "ingested and committed") all | \(String(format: "%.2f", o.consoleDone.seconds)) s → \(Int(ours)) msg/s |")
        if kind == "events", let received = o.consoleReceived {
            print("| \(consoles) received as many messages (not yet committed) | \(String(format: "%.2f", received.seconds)) s |")
        }
        print("| ratio | \(String(format: "%.2f", ours / reference))× (goal ≥ 0.95×) |")
        print("| \(several ? "consoles' CPU per message, all replicas" : "console CPU per message") (receive, decode, apply, commit) | \(String(format: "%.1f", o.consoleCPU / Double(total) * 1e6)) µs |")
        if let postgresCPU = o.postgresCPU {
            print("| PostgreSQL CPU per message (all its processes) | \(String(format: "%.1f", postgresCPU / Double(total) * 1e6)) µs |")
        }
        if kind == "events" {
            print("| events stored / duplicates ignored | \(o.stored) / \(o.duplicates) (expected \(total) / 0) |")
        }
        if let growth = o.diskGrowth {
            print("| database growth per \(kind == "telemetry" ? "message (device rows only)" : "event (rows and indexes\(o.rows == nil ? ", file and WAL" : ""))") | \(String(format: "%.0f", Double(growth) / Double(total))) B |")
        }
        if let rows = o.rows {
            print("| rows in the event table | \(rows) (expected \(total)) |")
            print("| events stored by each replica (* holds the coordinator lease) | \(shareText(o, percent: true)) |")
            print("| RSS of each replica with \(devices) devices | \(o.rssMiB.map { String(format: "%.1f", $0) }.joined(separator: ", ")) MiB |")
        } else {
            print("| console RSS with \(devices) devices | \(String(format: "%.1f", o.rssMiB.first ?? 0)) MiB |")
        }
        print("")
        BenchResult("console ingest of \(kind), \(devices) devices\(title)", value: ours, unit: "msg/s", reference: reference,
                    referenceName: "mosquitto_sub", goal: 0.95, on: .ratio, .atLeast).print()
    }

    /// One row per replica count, for issue 10's figure.
    func printSummary(_ outcomes: [Outcome]) {
        let total = devices * events
        print("| replicas | database | published in | mosquitto_sub msg/s | consoles msg/s | ratio | shares (* coordinator) | console CPU µs/msg | PostgreSQL CPU µs/msg | stored / expected (rows) | duplicates |")
        print("| ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: |")
        for o in outcomes {
            let ours = Double(total) / o.consoleDone.seconds
            let reference = Double(total) / o.subDone.seconds
            let postgres = o.postgresCPU.map { String(format: "%.1f", $0 / Double(total) * 1e6) } ?? "—"
            let stored = "\(o.stored) / \(total)" + (o.rows.map { " (\($0))" } ?? "")
            print("| \(o.replicas) | \(o.database) | \(String(format: "%.2f", o.published.seconds)) s | \(Int(reference)) | \(Int(ours)) | \(String(format: "%.2f", ours / reference))× | \(shareText(o, percent: false)) | \(String(format: "%.1f", o.consoleCPU / Double(total) * 1e6)) | \(postgres) | \(stored) | \(o.duplicates) |")
        }
    }

    /// "r1* 16812, r2 16600" (with "(34 %)" after each count when `percent`).
    func shareText(_ o: Outcome, percent: Bool) -> String {
        let total = max(o.stored, 1)
        return o.shares.map { share in
            "\(share.name)\(share.coordinator ? "*" : "") \(share.stored)" + (percent ? String(format: " (%.0f %%)", Double(share.stored) / Double(total) * 100) : "")
        }.joined(separator: ", ")
    }
}
