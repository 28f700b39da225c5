import FleetTestSupport
import Foundation
import Mosquitto
import Synchronization
import Testing

/// The end-to-end tests of `fleet-console`: the built executable as a
/// process with a generated config, a real mosquitto, real `massage-agent`
/// processes (``AgentProcess``), a ``FleetProbe`` watching the wire, and,
/// where a test must control every byte, devices played by a raw MQTT client
/// (``CraftedDevice``). One test (or a few) per "Done when" bullet of
/// issue 5; they read the API's JSON by its names (``WireJSON``), not
/// through the console's codecs.
///
/// Serialized: sessions run at `--speed 100` and several tests measure
/// deadlines, so they do not compete with each other for the two cores.
@Suite("fleet-console end to end", .serialized, .timeLimit(.minutes(4)), .tags(.e2e))
struct ConsoleEndToEndTests {}

// MARK: - Names

enum Fleet {
    /// Sites of the default console config (``ConsoleProcess/Options``).
    static let north = "clinic-north"
    static let south = "spa-south"
    /// Crafted devices and barriers live here, so they never touch the
    /// figures of the two clinics.
    static let lab = "lab"

    static func device(_ site: String, _ device: String) -> FleetProbe.Device {
        FleetProbe.Device(site: site, device: device)
    }

    /// A custom session of one step: `seconds` of simulated time (at
    /// ``ConsoleRig/speed`` that is `seconds / 100` of wall time).
    static func customSteps(seconds: Int, target: String = "calf", technique: String = "kneading") -> WireJSON {
        ["steps": [["target": .string(target), "technique": .string(technique), "intensity": 3, "duration_s": .int(seconds)]]]
    }

    /// A session long enough to be running whatever the test does next
    /// (20 simulated minutes: 12 s of wall time).
    static let longSession = customSteps(seconds: 1200)
}

// MARK: - The rig

/// A broker, a probe, the console, and a fleet of agents that are online in
/// the console's view.
struct ConsoleRig {
    /// Simulated time runs this many times faster in every agent.
    static let speed: Double = 100

    let broker: MosquittoBroker
    let probe: FleetProbe
    let console: ConsoleProcess
    let agents: [FleetProbe.Device: AgentProcess]
    let sentinel = SentinelCounter()

    var api: ConsoleAPI { console.api }
    var tokens: ConsoleProcess.Tokens { console.tokens }

    /// Starts the broker, the probe, the console and `devices` as agents;
    /// waits until the console shows every agent online; runs `body`; tears
    /// everything down. When `body` throws, the console's and the agents'
    /// diagnostics are added to the error.
    static func run(
        broker brokerOptions: BrokerOptions = .init(),
        persistentProbe: Bool = false,
        console configureConsole: (inout ConsoleProcess.Options) -> Void = { _ in },
        agents devices: [FleetProbe.Device],
        agent configureAgent: (FleetProbe.Device, inout AgentProcess.Options) -> Void = { _, _ in },
        _ body: (ConsoleRig) async throws -> Void
    ) async throws {
        let broker = try await MosquittoBroker.start(brokerOptions)
        defer { broker.stopNow() }
        let probe = try await FleetProbe.connect(to: broker, name: "watch", persistentSession: persistentProbe)
        var consoleOptions = ConsoleProcess.Options()
        configureConsole(&consoleOptions)
        let console = try await ConsoleProcess.start(consoleOptions, broker: broker)
        defer { console.stopNow() }

        var agents: [FleetProbe.Device: AgentProcess] = [:]
        defer { for agent in agents.values { agent.stopNow() } }
        let mark = probe.mark()
        for device in devices {
            var options = AgentProcess.Options(site: device.site, device: device.device, speed: speed)
            configureAgent(device, &options)
            agents[device] = try AgentProcess.launch(options, broker: broker)
        }
        let rig = ConsoleRig(broker: broker, probe: probe, console: console, agents: agents)
        do {
            for agent in agents.values {
                try await agent.waitUntilOnline(probe, after: mark)
            }
            for device in devices {
                try await rig.waitForDevice(device, "\(device) online in the console") { $0["online"]?.bool == true }
            }
            try await body(rig)
        } catch {
            await probe.close()
            let agentDiagnostics = agents.values.map { $0.diagnostics(lines: 15) }.joined(separator: "\n\n")
            throw FixtureError("\(error)\n\n\(console.diagnostics(lines: 60))\n\n\(agentDiagnostics)")
        }
        await probe.close()
    }

    /// The agent playing `device`.
    func agent(_ device: FleetProbe.Device) throws -> AgentProcess {
        guard let agent = agents[device] else { throw FixtureError("no agent plays \(device) in this rig") }
        return agent
    }

    // MARK: Reading the API

    /// `GET path` with `token` (admin by default); the response must be 200.
    func getJSON(_ path: String, token: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) async throws -> WireJSON {
        let response = try await api.get(path, token: token ?? tokens.admin)
        try #require(response.status == 200, "\(response)", sourceLocation: sourceLocation)
        return try #require(response.json, "\(response) is not JSON", sourceLocation: sourceLocation)
    }

    /// Polls `GET path` until `condition` holds for a response; returns it.
    /// On timeout the last response and the console's log tail explain why.
    @discardableResult
    func waitFor(
        _ path: String,
        token: String? = nil,
        timeout: Duration = .seconds(20),
        _ description: String,
        until condition: (ConsoleResponse) -> Bool
    ) async throws -> ConsoleResponse {
        let api = self.api
        let token = token ?? tokens.admin
        let last = LastResponse()
        do {
            return try await waitForValue(timeout: timeout, pollEvery: .milliseconds(100), description) {
                let response = try await api.get(path, token: token)
                last.set(response)
                return condition(response) ? response : nil
            }
        } catch let error as TimeoutError {
            throw TimeoutError(
                condition: error.condition, timeout: timeout,
                detail: "last response: \(last.get().map(\.description) ?? "none")\n" + console.diagnostics(lines: 30))
        }
    }

    /// Waits until the console's view of `device` (`GET
    /// /api/v1/devices/{site}/{device}`'s `device` object) satisfies
    /// `condition`; returns the whole detail.
    @discardableResult
    func waitForDevice(
        _ device: FleetProbe.Device,
        timeout: Duration = .seconds(20),
        _ description: String,
        where condition: @escaping (WireJSON) -> Bool
    ) async throws -> WireJSON {
        let response = try await waitFor("/api/v1/devices/\(device.site)/\(device.device)", timeout: timeout, description) {
            $0.status == 200 && ($0.json?["device"]).map(condition) == true
        }
        return try #require(response.json)
    }

    /// The console's summary of `device` (nil on 404).
    func summary(_ device: FleetProbe.Device) async throws -> WireJSON? {
        let response = try await api.get("/api/v1/devices/\(device.site)/\(device.device)", token: tokens.admin)
        if response.status == 404 { return nil }
        try #require(response.status == 200, "\(response)")
        return response.json?["device"]
    }

    /// `GET /api/v1/devices` (with `query`, e.g. `?site=lab`): the `devices` array.
    func devices(_ query: String = "", token: String? = nil) async throws -> [WireJSON] {
        try #require(try await getJSON("/api/v1/devices\(query)", token: token)["devices"]?.array, "no devices array")
    }

    /// `GET /api/v1/alerts?active=…`: the `alerts` array.
    func alerts(active: Bool? = true, token: String? = nil) async throws -> [WireJSON] {
        let query = active.map { "?active=\($0)" } ?? ""
        return try #require(try await getJSON("/api/v1/alerts\(query)", token: token)["alerts"]?.array, "no alerts array")
    }

    /// `GET /metrics` (no token).
    func metrics() async throws -> PrometheusText {
        let response = try await api.get("/metrics", token: nil)
        try #require(response.status == 200, "\(response)")
        return PrometheusText(response.text)
    }

    /// Polls `GET /metrics` until `condition` holds (gauges follow the
    /// console's health tick, not each message).
    @discardableResult
    func waitForMetrics(
        timeout: Duration = .seconds(10), _ description: String, until condition: @escaping (PrometheusText) -> Bool
    ) async throws -> PrometheusText {
        let response = try await waitFor("/metrics", token: nil, timeout: timeout, description) {
            $0.status == 200 && condition(PrometheusText($0.text))
        }
        return PrometheusText(response.text)
    }

    // MARK: Commands

    /// `POST /api/v1/commands` with `token` (operator by default); the
    /// response must be 202 with a record; returns it.
    func submit(_ body: WireJSON, token: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) async throws -> WireJSON {
        let response = try await api.post("/api/v1/commands", json: body, token: token ?? tokens.operator)
        try #require(response.status == 202, "POST /api/v1/commands \(body): \(response)", sourceLocation: sourceLocation)
        let record = try #require(response.json, "\(response)", sourceLocation: sourceLocation)
        try #require(record["id"]?.string?.isEmpty == false, "the record has no id: \(response)", sourceLocation: sourceLocation)
        return record
    }

    /// Polls `GET /api/v1/commands/{id}` until `condition` holds for the record.
    @discardableResult
    func waitForCommand(
        _ id: String,
        timeout: Duration = .seconds(30),
        _ description: String,
        until condition: @escaping (WireJSON) -> Bool
    ) async throws -> WireJSON {
        let response = try await waitFor("/api/v1/commands/\(id)", timeout: timeout, "command \(id): \(description)") {
            $0.status == 200 && $0.json.map(condition) == true
        }
        return try #require(response.json)
    }

    /// Waits until every per-device result of command `id` is final.
    @discardableResult
    func waitUntilFinished(_ id: String, timeout: Duration = .seconds(30)) async throws -> WireJSON {
        try await waitForCommand(id, timeout: timeout, "every result final") { record in
            let results = record["results"]?.array ?? []
            return !results.isEmpty && results.allSatisfy { CommandStates.final.contains($0["state"]?.string ?? "") }
        }
    }

    // MARK: Barrier

    /// Returns once the console has ingested everything the probe's client
    /// published before this call: the probe publishes a retained status of
    /// `lab/sentinel` with a new epoch and waits until the API shows it. The
    /// broker forwards one client's QoS 1 messages in order, and the console
    /// ingests them in order.
    func barrier(timeout: Duration = .seconds(20)) async throws {
        let epoch = sentinel.next()
        let device = Fleet.device(Fleet.lab, "sentinel")
        let status: WireJSON = [
            "state": "online", "agent_version": "crafted", "epoch": .int(epoch), "seq": 1,
            "ts": .string(FleetProbe.timestamp(Date())), "programs": [], "config_version": 0, "capabilities": [],
        ]
        try await probe.client.publish(probe.topic("status", for: device), payload: status.bytes, qos: .atLeastOnce, retain: true)
        try await waitForDevice(device, timeout: timeout, "the barrier: lab/sentinel at epoch \(epoch)") {
            $0["epoch"]?.int == epoch
        }
    }
}

/// The states of a per-device command result.
enum CommandStates {
    static let all: Set<String> = ["queued", "sent", "succeeded", "failed", "timed_out", "expired"]
    static let final: Set<String> = ["succeeded", "failed", "timed_out", "expired"]
}

extension WireJSON {
    /// The per-device result for `device` in a command record.
    func result(for device: FleetProbe.Device) -> WireJSON? {
        self["results"]?.array?.first { $0["site"]?.string == device.site && $0["device"]?.string == device.device }
    }

    /// `state` of the result for `device` ("missing" if there is none).
    func state(of device: FleetProbe.Device) -> String {
        result(for: device)?["state"]?.string ?? "missing"
    }

    /// The `(site, device)` of every result of a command record, or every
    /// entry of a `devices` array.
    var addresses: Set<FleetProbe.Device> {
        let list = self["results"]?.array ?? self.array ?? []
        return Set(list.compactMap { item in
            guard let site = item["site"]?.string, let device = item["device"]?.string else { return nil }
            return FleetProbe.Device(site: site, device: device)
        })
    }
}

extension Array where Element == WireJSON {
    /// Entries of a `devices` or `alerts` array with this site and device.
    func about(_ device: FleetProbe.Device) -> [WireJSON] {
        filter { $0["site"]?.string == device.site && $0["device"]?.string == device.device }
    }

    /// The distinct `site`s of the entries.
    var sites: Set<String> { Set(compactMap { $0["site"]?.string }) }

    /// The `(site, device)` of the entries.
    var addresses: Set<FleetProbe.Device> { WireJSON.array(self).addresses }
}

final class SentinelCounter: Sendable {
    private let value = Mutex(Int(Date().timeIntervalSince1970))
    func next() -> Int { value.withLock { $0 += 1; return $0 } }
}

final class LastResponse: Sendable {
    private let value = Mutex<ConsoleResponse?>(nil)
    func set(_ response: ConsoleResponse) { value.withLock { $0 = response } }
    func get() -> ConsoleResponse? { value.withLock { $0 } }
}

// MARK: - A device played by a raw MQTT client

/// A device whose every byte the test writes: a raw MQTT client that
/// publishes stamped agent messages (`ts`, `epoch`, `seq`, `historical`)
/// on a device's topics, registers the offline status as its will, records
/// the commands it receives on its `cmd` topic, and answers them only when
/// told to. For duplicates, gaps, counter resets and a device that never
/// answers.
final class CraftedDevice: Sendable {
    let device: FleetProbe.Device
    let root: String
    let epoch: Int
    let client: MQTTClient
    private let inbox: MessageCollector
    private let seqs = Mutex<[String: Int]>([:])

    private init(device: FleetProbe.Device, root: String, epoch: Int, client: MQTTClient) {
        self.device = device
        self.root = root
        self.epoch = epoch
        self.client = client
        inbox = MessageCollector(client)
    }

    /// Connects (will: status offline of `epoch`), subscribes to its `cmd`
    /// topic and, with `online`, publishes its birth (status online,
    /// retained). Its status stamps start at 1 (birth) and 2 (the will).
    static func connect(
        _ device: FleetProbe.Device, broker: MosquittoBroker, epoch: Int = 1, root: String = "massage/v1", online: Bool = true
    ) async throws -> CraftedDevice {
        var configuration = MQTTConfiguration(
            host: broker.host, port: broker.port, clientID: "crafted-\(device.device)-\(UUID().uuidString.prefix(6).lowercased())")
        configuration.keepAliveSeconds = 5
        let will: WireJSON = [
            "state": "offline", "agent_version": "crafted", "epoch": .int(epoch), "seq": 2,
            "ts": .string(FleetProbe.timestamp(Date())),
        ]
        configuration.will = Will(topic: "\(root)/\(device.site)/\(device.device)/status", payload: will.bytes, qos: .atLeastOnce, retain: true)
        let client = try MQTTClient(configuration: configuration)
        let crafted = CraftedDevice(device: device, root: root, epoch: epoch, client: client)
        do {
            try await client.connect()
            try await client.subscribe([Subscription(crafted.topic("cmd"), qos: .atLeastOnce)])
            crafted.seqs.withLock { $0["status"] = 2 }
            if online {
                try await crafted.publish("status", crafted.birth, seq: 1, retain: true)
            }
        } catch {
            await client.shutdown()
            throw error
        }
        return crafted
    }

    /// The birth status body.
    var birth: WireJSON {
        [
            "state": "online", "agent_version": "crafted", "programs": ["sole-vitality", "calf-release"],
            "config_version": 0, "capabilities": ["custom_steps"],
        ]
    }

    func topic(_ kind: String) -> String { "\(root)/\(device.site)/\(device.device)/\(kind)" }

    /// The next `seq` of `kind` in this epoch (1 first).
    func nextSeq(_ kind: String) -> Int {
        seqs.withLock { $0[kind, default: 0] += 1; return $0[kind]! }
    }

    /// `body` with the envelope: `ts` (now), `epoch`, `seq` (the next one of
    /// `kind` unless given), `historical: true` when asked.
    func stamped(_ kind: String, _ body: WireJSON, seq: Int? = nil, epoch: Int? = nil, historical: Bool = false) -> WireJSON {
        var message = body
            .setting("ts", to: .string(FleetProbe.timestamp(Date())))
            .setting("epoch", to: .int(epoch ?? self.epoch))
            .setting("seq", to: .int(seq ?? nextSeq(kind)))
        if historical { message = message.setting("historical", to: true) }
        return message
    }

    /// Publishes `body` stamped on the device's `kind` topic (QoS 1; status,
    /// usage and config/reported retained unless `retain` says otherwise);
    /// returns the message as sent.
    @discardableResult
    func publish(
        _ kind: String, _ body: WireJSON, seq: Int? = nil, epoch: Int? = nil, historical: Bool = false, retain: Bool? = nil
    ) async throws -> WireJSON {
        let message = stamped(kind, body, seq: seq, epoch: epoch, historical: historical)
        let retained = retain ?? ["status", "usage", "config/reported"].contains(kind)
        try await client.publish(topic(kind), payload: message.bytes, qos: .atLeastOnce, retain: retained)
        return message
    }

    /// Publishes any bytes on the device's `kind` topic.
    func publishRaw(_ kind: String, _ payload: [UInt8], qos: QoS = .atLeastOnce, retain: Bool = false) async throws {
        try await client.publish(topic(kind), payload: payload, qos: qos, retain: retain)
    }

    /// Every command received on the `cmd` topic, in order.
    var commands: [MQTTMessage] { inbox.messages(on: topic("cmd")) }

    /// The received commands with `action`.
    func commands(action: String) -> [MQTTMessage] {
        commands.filter { (try? WireJSON.parse($0.payload))?["action"]?.string == action }
    }

    /// Waits for a command with `action` and returns it.
    @discardableResult
    func waitForCommand(action: String, timeout: Duration = .seconds(15)) async throws -> MQTTMessage {
        try await waitForValue(timeout: timeout, "\(device) to receive a \(action) command on \(topic("cmd"))") {
            commands(action: action).first
        }
    }

    /// Answers `command` the way an agent does: to its Response Topic with
    /// its Correlation Data (or to `reply_to`), QoS 1.
    func reply(to command: MQTTMessage, ok: Bool = true, result: WireJSON = [:], error: WireJSON? = nil) async throws {
        let json = try WireJSON.parse(command.payload)
        var reply: WireJSON = ["id": json["id"] ?? .null, "ok": .bool(ok)]
        reply = ok ? reply.setting("result", to: result) : reply.setting("error", to: error ?? ["code": "internal", "message": "crafted"])
        guard let topic = command.properties.responseTopic ?? json["reply_to"]?.string else {
            throw FixtureError("the command has neither a Response Topic nor reply_to: \(String(decoding: command.payload, as: UTF8.self))")
        }
        try await client.publish(
            topic, payload: reply.bytes, qos: .atLeastOnce,
            properties: MQTTProperties(correlationData: command.properties.correlationData))
    }

    func close() async { await client.shutdown() }
}

// MARK: - Prometheus text

/// `GET /metrics` parsed: samples `name{labels} value`.
struct PrometheusText: CustomStringConvertible {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    let text: String
    let samples: [Sample]

    init(_ text: String) {
        self.text = text
        samples = text.split(separator: "\n").compactMap { PrometheusText.parse(String($0)) }
    }

    /// Whether any sample (or `# TYPE` line) has this metric name.
    func has(_ name: String) -> Bool {
        samples.contains { $0.name == name } || text.contains("# TYPE \(name) ")
    }

    /// The sum of the samples of `name` whose labels include `labels`; nil when none.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        let matching = samples.filter { sample in
            sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value }
        }
        return matching.isEmpty ? nil : matching.reduce(0) { $0 + $1.value }
    }

    /// ``value(_:_:)`` with 0 for "no sample".
    func sum(_ name: String, _ labels: [String: String] = [:]) -> Double { value(name, labels) ?? 0 }

    /// The samples of the metrics `names`, as sorted text lines in the
    /// exposition format (labels sorted), for before/after comparisons.
    func lines(of names: [String]) -> [String] {
        samples.filter { names.contains($0.name) }
            .map { sample in
                let labels = sample.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\($0.value)\"" }
                return "\(sample.name)\(labels.isEmpty ? "" : "{" + labels.joined(separator: ",") + "}") \(sample.value)"
            }
            .sorted()
    }

    var description: String { text }

    private static func parse(_ line: String) -> Sample? {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty, !trimmed.hasPrefix("#") else { return nil }
        var name = ""
        var labels: [String: String] = [:]
        var rest = Substring(trimmed)
        if let brace = rest.firstIndex(of: "{") {
            name = String(rest[..<brace])
            rest = rest[rest.index(after: brace)...]
            // label="value", … }
            while let equals = rest.firstIndex(of: "=") {
                let key = rest[..<equals].trimmingCharacters(in: CharacterSet(charactersIn: ", "))
                rest = rest[rest.index(after: equals)...]
                guard rest.first == "\"" else { return nil }
                rest = rest.dropFirst()
                var value = ""
                var escaped = false
                while let c = rest.first {
                    rest = rest.dropFirst()
                    if escaped {
                        value.append(c == "n" ? "\n" : c)
                        escaped = false
                    } else if c == "\\" {
                        escaped = true
                    } else if c == "\"" {
                        break
                    } else {
                        value.append(c)
                    }
                }
                labels[key] = value
                rest = rest.drop { $0 == "," || $0 == " " }
                if rest.first == "}" { break }
            }
            guard let close = rest.firstIndex(of: "}") else { return nil }
            rest = rest[rest.index(after: close)...]
        } else {
            guard let space = rest.firstIndex(of: " ") else { return nil }
            name = String(rest[..<space])
            rest = rest[space...]
        }
        let fields = rest.split(separator: " ")
        guard let first = fields.first else { return nil }
        let text = String(first)
        let value: Double? = switch text {
        case "+Inf": .infinity
        case "-Inf": -.infinity
        case "NaN": .nan
        default: Double(text)
        }
        guard let value else { return nil }
        return Sample(name: name, labels: labels, value: value)
    }
}

// MARK: - Usage ledgers

/// The counters of a usage document (an agent's usage message, or a
/// console's `totals[site]`), zeros left out, so two compare with `==` and
/// add up.
struct Ledger: Equatable, Sendable, CustomStringConvertible {
    var started = 0
    var completed = 0
    var aborted: [String: Int] = [:]
    var byZone: [String: Double] = [:]
    var byPoint: [String: Double] = [:]
    var byTechnique: [String: Double] = [:]
    var byProgram: [String: Double] = [:]

    init() {}

    init(_ json: WireJSON?) {
        guard let json else { return }
        started = json["sessions"]?["started"]?.int ?? 0
        completed = json["sessions"]?["completed"]?.int ?? 0
        aborted = ((json["sessions"]?["aborted"])?.object ?? [:]).compactMapValues { $0.int }.filter { $0.value != 0 }
        byZone = Ledger.seconds(json["seconds"]?["by_zone"])
        byPoint = Ledger.seconds(json["seconds"]?["by_point"])
        byTechnique = Ledger.seconds(json["seconds"]?["by_technique"])
        byProgram = Ledger.seconds(json["seconds"]?["by_program"])
    }

    private static func seconds(_ json: WireJSON?) -> [String: Double] {
        (json?.object ?? [:]).compactMapValues { $0.double }.filter { $0.value != 0 }
    }

    static func + (lhs: Ledger, rhs: Ledger) -> Ledger {
        var out = lhs
        out.started += rhs.started
        out.completed += rhs.completed
        out.aborted.merge(rhs.aborted, uniquingKeysWith: +)
        out.byZone.merge(rhs.byZone, uniquingKeysWith: +)
        out.byPoint.merge(rhs.byPoint, uniquingKeysWith: +)
        out.byTechnique.merge(rhs.byTechnique, uniquingKeysWith: +)
        out.byProgram.merge(rhs.byProgram, uniquingKeysWith: +)
        return out
    }

    var description: String {
        func show<V>(_ d: [String: V]) -> String { d.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") }
        return "started \(started), completed \(completed), aborted [\(show(aborted))], by_zone [\(show(byZone))], "
            + "by_point [\(show(byPoint))], by_technique [\(show(byTechnique))], by_program [\(show(byProgram))]"
    }
}

// MARK: - Dates

enum Day {
    /// `YYYY-MM-DD` of `date` in UTC, shifted by `days`.
    static func string(_ date: Date = Date(), plus days: Int = 0) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let shifted = calendar.date(byAdding: .day, value: days, to: date)!
        let parts = calendar.dateComponents([.year, .month, .day], from: shifted)
        return String(format: "%04d-%02d-%02d", parts.year!, parts.month!, parts.day!)
    }
}
