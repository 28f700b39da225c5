@testable import FleetConsole
import FleetTestSupport
import Foundation
import GRDB
import PostgresNIO
import MassageEngine
import Synchronization

// What the chaos run (issue 9, item 4) needs besides ``ConsoleRig``: a
// seeded random source, the schedule it draws, and the two read-only views
// of SQLite the invariants are measured against — the console's `event`
// table and an agent's durable outbox.

// MARK: - Seeded randomness

/// Schedule draws on MassageEngine's SplitMix64: the same sequence on every
/// platform for a given seed, so a failing schedule can be replayed exactly.
extension SplitMix64 {
    /// A uniform integer in `range`.
    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.count))
    }

    /// A uniform duration in `range` (millisecond resolution).
    mutating func milliseconds(_ range: ClosedRange<Int>) -> Duration { .milliseconds(int(range)) }

    /// `true` with probability `percent`/100.
    mutating func chance(_ percent: Int) -> Bool { int(0...99) < percent }

    mutating func pick<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }

    /// `count` distinct items, in draw order.
    mutating func sample<T>(_ items: [T], count: Int) -> [T] {
        var pool = items
        var out: [T] = []
        while out.count < count, !pool.isEmpty {
            out.append(pool.remove(at: int(0...(pool.count - 1))))
        }
        return out
    }
}

// MARK: - The schedule

/// Everything the chaos run does, in time order, drawn from one seed.
struct ChaosPlan: CustomStringConvertible {
    enum Targets: CustomStringConvertible {
        /// `{site, idle_only: true}`: the site-wide start an operator makes.
        case site(String)
        case devices([FleetProbe.Device])

        var json: WireJSON {
            switch self {
            case .site(let site): ["site": .string(site), "idle_only": true]
            case .devices(let devices): ["devices": .array(devices.map { .string("\($0)") })]
            }
        }

        var description: String {
            switch self {
            case .site(let site): "site \(site) (idle only)"
            case .devices(let devices): devices.map(\.description).joined(separator: ", ")
            }
        }
    }

    enum Session: CustomStringConvertible {
        case program(String)
        /// One custom step of `seconds` of simulated time.
        case steps(seconds: Int, target: String, technique: String)
        /// `count` custom steps of `seconds` each (a session_step event each).
        case manySteps(count: Int, seconds: Int)

        var params: WireJSON {
            switch self {
            case .program(let id): ["program": .string(id)]
            case .steps(let seconds, let target, let technique): Fleet.customSteps(seconds: seconds, target: target, technique: technique)
            case .manySteps(let count, let seconds):
                ["steps": .array((0..<count).map { index in
                    ["target": .string(index % 2 == 0 ? "calf" : "thigh"), "technique": "kneading", "intensity": 3, "duration_s": .int(seconds)]
                })]
            }
        }

        var description: String {
            switch self {
            case .program(let id): id
            case .steps(let seconds, let target, let technique): "\(target)/\(technique) \(seconds) s"
            case .manySteps(let count, let seconds): "\(count) steps of \(seconds) s"
            }
        }
    }

    enum Action: CustomStringConvertible {
        case killBroker, restartBroker
        case killAgent(FleetProbe.Device), restartAgent(FleetProbe.Device)
        case killConsole, restartConsole
        case start(Targets, Session)
        case stop([FleetProbe.Device])

        var description: String {
            switch self {
            case .killBroker: "SIGKILL the broker"
            case .restartBroker: "restart the broker (same port)"
            case .killAgent(let device): "SIGKILL agent \(device)"
            case .restartAgent(let device): "restart agent \(device) (same data dir)"
            case .killConsole: "SIGKILL the console"
            case .restartConsole: "restart the console (same database and port)"
            case .start(let targets, let session): "start_session \(session) on \(targets)"
            case .stop(let devices): "stop_session on \(devices.map(\.description).joined(separator: ", "))"
            }
        }
    }

    struct Step {
        /// Not before this long after the chaos began.
        var at: Duration
        var action: Action
    }

    let seed: UInt64
    let steps: [Step]

    /// Built-in programs (Config/programs), all shorter than the rollout's
    /// `max_session_minutes: 18`.
    static let programs = ["sole-vitality", "calf-release", "knee-leg-relief", "plantar-relief", "shin-recovery", "full-leg-circulation"]
    /// Custom steps the engine accepts at intensity 3.
    static let customTargets = [("calf", "kneading"), ("thigh", "kneading"), ("calf", "rolling")]

    /// Draws the schedule of a run of `length` over `devices` (two sites):
    /// three broker outages of 2–4 s, `agentKills` agents SIGKILLed (the
    /// first during an outage) and restarted 1–3 s later, one console SIGKILL and restart, and a session
    /// action every 1.2–2.5 s (site-wide and per-device starts, some
    /// stop_session).
    static func draw(seed: UInt64, devices: [FleetProbe.Device], sites: [String], length: Duration, agentKills: Int) -> ChaosPlan {
        var random = SplitMix64(seed: seed)
        var steps: [Step] = []
        let seconds = Int(length.components.seconds)

        // Broker outages early, in the middle and late in the run.
        var outages: [Duration] = []
        for start in [seconds * 12 / 100, seconds * 40 / 100, seconds * 72 / 100] {
            let down = random.milliseconds((start * 1000)...(start * 1000 + 3000))
            outages.append(down)
            steps.append(Step(at: down, action: .killBroker))
            steps.append(Step(at: down + random.milliseconds(2000...4000), action: .restartBroker))
        }
        // The console, once, between the second and the third outage.
        let consoleDown = random.milliseconds((seconds * 55 / 100 * 1000)...(seconds * 60 / 100 * 1000))
        steps.append(Step(at: consoleDown, action: .killConsole))
        steps.append(Step(at: consoleDown + random.milliseconds(1000...2000), action: .restartConsole))
        // Agents: distinct devices. The first is given a session just before
        // the second broker outage and dies 1–1.8 s into it, so its outbox
        // holds what it could not deliver; the others die any time but the
        // last tenth.
        for (index, device) in random.sample(devices, count: agentKills).enumerated() {
            let killed = index == 0
                ? outages[1] + random.milliseconds(1000...1800)
                : random.milliseconds(4000...(seconds * 88 / 100 * 1000))
            if index == 0 {
                // Mid-session when the broker goes: whatever it runs is
                // stopped, then a session of eight short steps (a
                // session_step every 0.45 s) starts 1.5 s before the outage.
                steps.append(Step(at: outages[1] - .milliseconds(3000), action: .stop([device])))
                steps.append(Step(at: outages[1] - .milliseconds(1500), action: .start(.devices([device]), .manySteps(count: 8, seconds: 45))))
            }
            steps.append(Step(at: killed, action: .killAgent(device)))
            steps.append(Step(at: killed + random.milliseconds(1000...3000), action: .restartAgent(device)))
        }
        // Sessions, throughout (the last start well before the end).
        var at = Duration.milliseconds(500)
        while at < length - .seconds(4) {
            let action: Action
            let roll = random.int(0...99)
            let session: Session
            if random.chance(50) {
                session = .program(random.pick(programs))
            } else {
                let (target, technique) = random.pick(customTargets)
                session = .steps(seconds: random.int(200...480), target: target, technique: technique)
            }
            if roll < 40 {
                action = .start(.site(random.pick(sites)), session)
            } else if roll < 75 {
                action = .start(.devices(random.sample(devices, count: random.int(1...3))), session)
            } else {
                action = .stop(random.sample(devices, count: random.int(1...2)))
            }
            steps.append(Step(at: at, action: action))
            at += random.milliseconds(1200...2500)
        }
        return ChaosPlan(seed: seed, steps: steps.enumerated().sorted { ($0.element.at, $0.offset) < ($1.element.at, $1.offset) }.map(\.element))
    }

    var description: String {
        "chaos plan, seed \(seed) (set CHAOS_SEED to replay another):\n"
            + steps.map { step in
                let ms = step.at.components.seconds * 1000 + step.at.components.attoseconds / 1_000_000_000_000_000
                return String(format: "  t+%6.1f s  ", Double(ms) / 1000) + step.action.description
            }.joined(separator: "\n")
    }
}

// MARK: - What was logged while it ran

/// The run's log (what happened, with timestamps), shared by the steps and
/// printed with the plan, so a failure can be read against the schedule.
final class ChaosLog: Sendable {
    private let start = ContinuousClock.now
    /// When the log began, by the wall clock (to place the probe's arrivals).
    let began = Date()
    private let lines = Mutex<[String]>([])

    func note(_ text: String) {
        let elapsed = ContinuousClock.now - start
        let ms = elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
        lines.withLock { $0.append(String(format: "[%7.2f s] ", Double(ms) / 1000) + text) }
    }

    var text: String { lines.withLock { $0.joined(separator: "\n") } }

    /// `date` as the log's `t+…` offset.
    func offset(_ date: Date) -> String { String(format: "%.2f s", date.timeIntervalSince(began)) }
}

// MARK: - Event stamps an agent published

/// The events each agent stamped, by device and epoch, as far as the test
/// can witness them: what its outbox held when it was SIGKILLed (read from
/// its SQLite file while it was dead), plus what the probe saw on the wire.
/// An agent stamps the events of an epoch 1, 2, 3, … without a hole (one
/// counter, under the lock that writes the outbox), so the highest
/// witnessed seq of an epoch says the agent published every seq up to it.
final class PublishedEvents: Sendable {
    private let seqs = Mutex<[FleetProbe.Device: [Int: Set<Int>]]>([:])

    func add(_ device: FleetProbe.Device, epoch: Int, seq: Int) {
        seqs.withLock { _ = $0[device, default: [:]][epoch, default: []].insert(seq) }
    }

    /// Epoch → highest witnessed seq.
    func highest(_ device: FleetProbe.Device) -> [Int: Int] {
        seqs.withLock { ($0[device] ?? [:]).compactMapValues { $0.max() } }
    }
}

// MARK: - SQLite, read-only

/// An agent's SQLite file (`data_dir/agent.sqlite`), read-only: the outbox
/// is what the agent stamped and has not yet had acknowledged by a broker.
enum AgentOutboxFile {
    struct Entry {
        var topic: String
        var json: WireJSON?
    }

    static func entries(dataDirectory: URL) throws -> [Entry] {
        try read(dataDirectory) { db in
            try Row.fetchAll(db, sql: "SELECT topic, payload FROM outbox ORDER BY id").map { row in
                let payload: Data = row["payload"]
                return Entry(topic: row["topic"], json: try? WireJSON.parse(Array(payload)))
            }
        }
    }

    static func count(dataDirectory: URL) throws -> Int {
        try read(dataDirectory) { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox") ?? 0 }
    }

    private static func read<T>(_ dataDirectory: URL, _ body: (Database) throws -> T) throws -> T {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(5)
        let queue = try DatabaseQueue(path: dataDirectory.appendingPathComponent("agent.sqlite").path, configuration: configuration)
        return try queue.read(body)
    }
}

/// The console's SQLite file, read-only: the `event` table, keyed by
/// `(site, device, epoch, seq)`.
enum ConsoleEventTable {
    struct Row: Sendable {
        var epoch: Int
        var seq: Int
        var type: String
        var reason: String?
        /// How many rows hold this `(epoch, seq)` (1 when stored once).
        var copies: Int
    }

    static let query = """
        SELECT epoch, seq, min(type) AS type, min(reason) AS reason, count(*) AS copies
        FROM event WHERE site = $1 AND device = $2 GROUP BY epoch, seq ORDER BY epoch, seq
        """

    /// Every stored `(epoch, seq)` of `devices`, with its type and reason,
    /// read from the console's SQLite file or PostgreSQL database.
    static func rows(database: String, devices: [FleetProbe.Device]) async throws -> [FleetProbe.Device: [Row]] {
        if database.hasPrefix("postgres") {
            return try await ConsoleStoreAccess.withStore(database) { store in
                guard let pg = store as? PostgresStore else { throw FixtureError("\(database) did not open as PostgreSQL") }
                var out: [FleetProbe.Device: [Row]] = [:]
                for device in devices {
                    var rows: [Row] = []
                    let result = try await pg.client.query(PostgresQuery(unsafeSQL: query, binds: try binds(device.site, device.device)))
                    for try await (epoch, seq, type, reason, copies) in result.decode((Int64, Int64, String, String?, Int64).self) {
                        rows.append(Row(epoch: Int(epoch), seq: Int(seq), type: type, reason: reason, copies: Int(copies)))
                    }
                    out[device] = rows
                }
                return out
            }
        }
        return try sqliteRows(path: database, devices: devices)
    }

    static func binds(_ values: String...) throws -> PostgresBindings {
        var b = PostgresBindings()
        for v in values { b.append(v) }
        return b
    }

    static func sqliteRows(path: String, devices: [FleetProbe.Device]) throws -> [FleetProbe.Device: [Row]] {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(5)
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        return try queue.read { db in
            var out: [FleetProbe.Device: [Row]] = [:]
            for device in devices {
                let rows = try GRDB.Row.fetchAll(db, sql: query.replacingOccurrences(of: "$1", with: "?").replacingOccurrences(of: "$2", with: "?"),
                                                 arguments: [device.site, device.device])
                out[device] = rows.map { Row(epoch: $0["epoch"], seq: $0["seq"], type: $0["type"], reason: $0["reason"], copies: $0["copies"]) }
            }
            return out
        }
    }
}
