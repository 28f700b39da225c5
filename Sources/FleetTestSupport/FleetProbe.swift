import Foundation
import Mosquitto
import Synchronization

// MARK: - FleetProbe

/// "A console in a test": one MQTT 5 client subscribed to `{root}/#` that
/// records every message (topic, payload, properties, arrival order and
/// time, the JSON when it parses), sends commands the way the console does
/// (Response Topic + Correlation Data) and waits for their replies with a
/// deadline, publishes desired configs, and waits for events, statuses,
/// usage and reported configs.
///
/// ```swift
/// let probe = try await FleetProbe.connect(to: broker)
/// let agent = try await AgentProcess.start(.init(device: "dev-1", speed: 100), broker: broker, probe: probe)
/// let reply = try await probe.send(action: "start_session", params: ["program": "sole-vitality"], to: agent.device)
/// let sessionID = try #require(reply.result?["session_id"]?.string)
/// try await probe.waitForEvent(type: "session_completed", sessionID: sessionID, on: agent.device)
/// await probe.close()
/// ```
///
/// It reads the wire independently of `FleetProtocol` (payloads are
/// ``WireJSON``), so a test checks the contract, not the codecs' agreement
/// with themselves. Everything is recorded for the probe's lifetime; use
/// ``mark()`` and the `after:` parameters to look only at what arrived
/// after a point. Reads are safe from any task.
///
/// With `persistentSession: true` the broker keeps the probe's subscription
/// and queues QoS 1 messages while the probe is disconnected (start the
/// broker with `BrokerOptions(persistence: true)` for that to survive a
/// broker `stop()`/`restart()`), so nothing an agent replays after an
/// outage is missed, whichever of the two reconnects first.
public final class FleetProbe: Sendable {
    /// A device's address on the wire.
    public struct Device: Sendable, Hashable, CustomStringConvertible {
        public var site: String
        public var device: String

        public init(site: String, device: String) {
            self.site = site
            self.device = device
        }

        public var description: String { "\(site)/\(device)" }
    }

    /// One received message.
    public struct Message: Sendable, CustomStringConvertible {
        /// Arrival order across all topics, from 0.
        public let index: Int
        /// When the probe took it from the client.
        public let arrival: Date
        public let topic: String
        public let payload: [UInt8]
        public let qos: QoS
        public let retained: Bool
        public let properties: MQTTProperties
        /// The device, for `{root}/{site}/{device}/…` topics.
        public let device: Device?
        /// The topic kind after the device: `status`, `telemetry`, `events`,
        /// `usage`, `cmd`, `config/desired`, `config/reported`.
        public let kind: String?
        /// The payload as JSON, nil when empty or not JSON.
        public let json: WireJSON?

        public subscript(key: String) -> WireJSON? { json?[key] }

        /// The payload as text (invalid UTF-8 repaired).
        public var text: String { String(decoding: payload, as: UTF8.self) }

        public var type: String? { json?["type"]?.string }
        public var sessionID: String? { json?["session_id"]?.string }
        public var epoch: Int? { json?["epoch"]?.int }
        public var seq: Int? { json?["seq"]?.int }
        public var ts: String? { json?["ts"]?.string }
        /// `ts` as a date.
        public var timestamp: Date? { ts.flatMap(FleetProbe.date(from:)) }
        /// True only when the message carries `"historical": true`.
        public var isHistorical: Bool { json?["historical"]?.bool == true }
        /// `(epoch, seq)`, the key the console stores agent messages by.
        public var stamp: Stamp? {
            guard let epoch, let seq else { return nil }
            return Stamp(epoch: epoch, seq: seq)
        }

        public var description: String {
            "#\(index) \(topic)\(retained ? " (retained)" : ""): \(text.count > 400 ? String(text.prefix(400)) + "…" : text)"
        }
    }

    /// `(epoch, seq)`, ordered as the console orders agent messages.
    public struct Stamp: Sendable, Hashable, Comparable, CustomStringConvertible {
        public var epoch: Int
        public var seq: Int

        public init(epoch: Int, seq: Int) {
            self.epoch = epoch
            self.seq = seq
        }

        public static func < (lhs: Stamp, rhs: Stamp) -> Bool {
            (lhs.epoch, lhs.seq) < (rhs.epoch, rhs.seq)
        }

        public var description: String { "(\(epoch), \(seq))" }
    }

    /// A command reply.
    public struct Reply: Sendable, CustomStringConvertible {
        /// The whole reply.
        public let json: WireJSON
        /// The message it came in (topic, correlation data, arrival).
        public let message: Message

        /// `id`, nil when absent or `null`.
        public var id: String? { json["id"]?.string }
        public var ok: Bool { json["ok"]?.bool == true }
        public var result: WireJSON? { json["result"] }
        public var errorCode: String? { json["error"]?["code"]?.string }
        public var errorMessage: String? { json["error"]?["message"]?.string }

        public var description: String { json.text }
    }

    /// The topic root, e.g. `massage/v1`.
    public let root: String
    /// This probe's instance name (part of its client id and reply topic).
    public let instance: String
    /// Where agents answer this probe's commands: `{root}/_console/reply/{instance}`.
    public let replyTopic: String
    /// The underlying client (connected, subscribed to `{root}/#`).
    public let client: MQTTClient

    private let recorder: ProbeRecorder
    private let counter = Atomic<Int>(0)
    private let extraFilters = Mutex<Set<String>>([])
    private let task: Task<Void, Never>
    private let configuration: MQTTConfiguration

    private init(client: MQTTClient, configuration: MQTTConfiguration, root: String, instance: String) {
        self.client = client
        self.configuration = configuration
        self.root = root
        self.instance = instance
        self.replyTopic = "\(root)/_console/reply/\(instance)"
        let recorder = ProbeRecorder(root: root)
        self.recorder = recorder
        let stream = client.messages  // the client's buffer, not the client: no reference cycle
        task = Task {
            for await message in stream {
                recorder.record(message)
            }
        }
    }

    deinit {
        task.cancel()
    }

    // MARK: Connecting

    /// Connects a probe to `broker` and subscribes to `{root}/#` (QoS 1).
    ///
    /// - Parameters:
    ///   - name: part of the client id and instance name (a random suffix is added).
    ///   - persistentSession: keep the session (subscription and queued QoS 1
    ///     messages) at the broker across disconnects (see the type's docs).
    ///   - configure: adjust the client configuration (TLS, username, …).
    public static func connect(
        to broker: MosquittoBroker,
        root: String = "massage/v1",
        name: String = "probe",
        persistentSession: Bool = false,
        configure: (inout MQTTConfiguration) -> Void = { _ in }
    ) async throws -> FleetProbe {
        try await connect(
            host: broker.host, port: broker.port, root: root, name: name,
            persistentSession: persistentSession, configure: configure)
    }

    /// Connects a probe to the broker at `host:port`; see ``connect(to:root:name:persistentSession:configure:)``.
    public static func connect(
        host: String,
        port: Int,
        root: String = "massage/v1",
        name: String = "probe",
        persistentSession: Bool = false,
        configure: (inout MQTTConfiguration) -> Void = { _ in }
    ) async throws -> FleetProbe {
        let instance = "\(name)-\(UUID().uuidString.prefix(8).lowercased())"
        var configuration = MQTTConfiguration(host: host, port: port, clientID: instance)
        configuration.keepAliveSeconds = 5
        configuration.reconnect = ReconnectPolicy(initialDelay: .milliseconds(50), maximumDelay: .milliseconds(500))
        if persistentSession {
            configuration.cleanStart = false
            configuration.sessionExpiry = 3600
        }
        configure(&configuration)
        let client = try MQTTClient(configuration: configuration)
        let probe = FleetProbe(client: client, configuration: configuration, root: root, instance: instance)
        do {
            try await client.connect()
            try await client.subscribe([Subscription("\(root)/#", qos: .atLeastOnce)])
        } catch {
            await client.shutdown()
            throw FixtureError("the fleet probe could not connect to and subscribe at \(host):\(port): \(error)")
        }
        return probe
    }

    /// Disconnects cleanly (what was recorded stays readable).
    public func close() async {
        await client.shutdown()
        task.cancel()
    }

    // MARK: Recorded messages

    /// Every message so far, in arrival order.
    public var messages: [Message] { recorder.all() }

    /// The number of messages so far: pass it as `after:` to look only at
    /// what arrives later.
    public func mark() -> Int { recorder.count() }

    /// Messages of `device` (of one `kind`, when given), in arrival order,
    /// from arrival index `after` on.
    public func messages(for device: Device, kind: String? = nil, after: Int = 0) -> [Message] {
        recorder.filter { $0.index >= after && $0.device == device && (kind == nil || $0.kind == kind) }
    }

    /// Messages on one exact topic, in arrival order.
    public func messages(onTopic topic: String, after: Int = 0) -> [Message] {
        recorder.filter { $0.index >= after && $0.topic == topic }
    }

    /// The device's events, in arrival order (duplicates included).
    public func events(for device: Device, after: Int = 0) -> [Message] {
        messages(for: device, kind: "events", after: after)
    }

    /// The device's events of one session, in arrival order.
    public func events(for device: Device, sessionID: String, after: Int = 0) -> [Message] {
        events(for: device, after: after).filter { $0.sessionID == sessionID }
    }

    /// The device's status messages, in arrival order.
    public func statuses(for device: Device, after: Int = 0) -> [Message] {
        messages(for: device, kind: "status", after: after)
    }

    /// The status the broker holds for the device now, as far as this probe
    /// saw: the last one that arrived (nil if none).
    public func retainedStatus(_ device: Device) -> Message? {
        statuses(for: device).last
    }

    /// The device's usage messages, in arrival order.
    public func usages(for device: Device, after: Int = 0) -> [Message] {
        messages(for: device, kind: "usage", after: after)
    }

    /// The device's current usage as the console sees it: the usage message
    /// with the highest `(epoch, seq)` (a historical replay arriving late
    /// does not win), nil if none.
    public func latestUsage(_ device: Device) -> Message? {
        FleetProbe.latest(usages(for: device))
    }

    /// The device's reported-config messages, in arrival order.
    public func reportedConfigs(for device: Device, after: Int = 0) -> [Message] {
        messages(for: device, kind: "config/reported", after: after)
    }

    /// The device's current reported config: the highest `(epoch, seq)`.
    public func reportedConfig(_ device: Device) -> Message? {
        FleetProbe.latest(reportedConfigs(for: device))
    }

    /// The device's telemetry, in arrival order.
    public func telemetry(for device: Device, after: Int = 0) -> [Message] {
        messages(for: device, kind: "telemetry", after: after)
    }

    /// The message with the highest `(epoch, seq)`; among messages without
    /// a stamp, the last to arrive.
    public static func latest(_ messages: [Message]) -> Message? {
        messages.max { a, b in
            switch (a.stamp, b.stamp) {
            case (let x?, let y?): return x == y ? a.index < b.index : x < y
            case (nil, _?): return true
            case (_?, nil): return false
            case (nil, nil): return a.index < b.index
            }
        }
    }

    // MARK: Waiting

    /// Waits for a message of `device` (and `kind`, when given) that
    /// arrived at index `after` or later and satisfies `predicate`; returns
    /// the first such. Throws ``TimeoutError`` listing the device's last
    /// messages.
    @discardableResult
    public func waitForMessage(
        on device: Device?,
        kind: String?,
        after: Int = 0,
        timeout: Duration = .seconds(10),
        _ description: String,
        where predicate: @escaping @Sendable (Message) -> Bool = { _ in true }
    ) async throws -> Message {
        do {
            return try await waitForValue(timeout: timeout, pollEvery: .milliseconds(5), description) {
                recorder.first {
                    $0.index >= after && (device == nil || $0.device == device) && (kind == nil || $0.kind == kind)
                        && predicate($0)
                }
            }
        } catch let error as TimeoutError {
            throw TimeoutError(condition: error.condition, timeout: timeout, detail: recentActivity(device))
        }
    }

    /// Waits for an event of `type` (of session `sessionID`, when given).
    @discardableResult
    public func waitForEvent(
        type: String,
        sessionID: String? = nil,
        on device: Device? = nil,
        after: Int = 0,
        timeout: Duration = .seconds(10),
        where predicate: @escaping @Sendable (Message) -> Bool = { _ in true }
    ) async throws -> Message {
        let what = "event \(type)\(sessionID.map { " of session \($0)" } ?? "")\(device.map { " from \($0)" } ?? "")"
        return try await waitForMessage(on: device, kind: "events", after: after, timeout: timeout, what) {
            $0.type == type && (sessionID == nil || $0.sessionID == sessionID) && predicate($0)
        }
    }

    /// Waits for a status message with `state` (and `epoch`, when given).
    @discardableResult
    public func waitForStatus(
        _ device: Device,
        state: String,
        epoch: Int? = nil,
        after: Int = 0,
        timeout: Duration = .seconds(10),
        where predicate: @escaping @Sendable (Message) -> Bool = { _ in true }
    ) async throws -> Message {
        let what = "status \(state)\(epoch.map { " with epoch \($0)" } ?? "") from \(device)"
        return try await waitForMessage(on: device, kind: "status", after: after, timeout: timeout, what) {
            $0["state"]?.string == state && (epoch == nil || $0.epoch == epoch) && predicate($0)
        }
    }

    /// Waits for a usage message satisfying `predicate`.
    @discardableResult
    public func waitForUsage(
        _ device: Device,
        after: Int = 0,
        timeout: Duration = .seconds(10),
        _ description: String = "a usage message",
        where predicate: @escaping @Sendable (Message) -> Bool
    ) async throws -> Message {
        try await waitForMessage(
            on: device, kind: "usage", after: after, timeout: timeout, "\(description) from \(device)",
            where: predicate)
    }

    /// Waits for a reported config of `version` in `state`.
    @discardableResult
    public func waitForReported(
        _ device: Device,
        version: Int,
        state: String,
        after: Int = 0,
        timeout: Duration = .seconds(10)
    ) async throws -> Message {
        try await waitForMessage(
            on: device, kind: "config/reported", after: after, timeout: timeout,
            "config/reported version \(version) \(state) from \(device)"
        ) {
            $0["version"]?.int == version && $0["state"]?.string == state
        }
    }

    /// The device's last few messages (or everyone's), for failure reports.
    public func recentActivity(_ device: Device?, count: Int = 20) -> String {
        let recent = recorder.filter { device == nil || $0.device == device || $0.topic.hasPrefix(replyTopic) }
            .suffix(count)
        if recent.isEmpty { return "the probe has received nothing\(device.map { " from \($0)" } ?? "")" }
        return "last messages seen by the probe:\n" + recent.map { "  \($0)" }.joined(separator: "\n")
    }

    // MARK: Commands

    /// Sends a command `{ "id", "action", "params"?, "expires_at"? }` to
    /// `device` (QoS 1, with Response Topic ``replyTopic`` and fresh
    /// Correlation Data) and returns the reply with the same correlation
    /// data. `id` defaults to a fresh unique id; a start without
    /// `expiresAt` expires in two minutes, as the console's would.
    @discardableResult
    public func send(
        action: String,
        params: WireJSON? = nil,
        to device: Device,
        id: String? = nil,
        expiresAt: Date? = nil,
        timeout: Duration = .seconds(10)
    ) async throws -> Reply {
        var command: WireJSON = ["id": .string(id ?? "cmd-\(UUID().uuidString.prefix(12).lowercased())"), "action": .string(action)]
        if let params { command = command.setting("params", to: params) }
        // As the console does: a start always carries its expiry (a device refuses one without).
        let expiry = expiresAt ?? (["start_session", "schedule_session"].contains(action) ? Date().addingTimeInterval(120) : nil)
        if let expiry { command = command.setting("expires_at", to: .string(FleetProbe.timestamp(expiry))) }
        return try await sendCommand(command, to: device, timeout: timeout)
    }

    /// Sends any JSON document as a command. With `responseTopic` (the
    /// default) it goes with Response Topic + Correlation Data and the reply
    /// is matched by correlation data; without, the command must carry
    /// `reply_to` and the reply is the first message on that topic with the
    /// command's `id`.
    @discardableResult
    public func sendCommand(
        _ command: WireJSON, to device: Device, responseTopic: Bool = true, timeout: Duration = .seconds(10)
    ) async throws -> Reply {
        if responseTopic {
            return try await sendRaw(command.bytes, to: device, timeout: timeout)
        }
        guard let replyTo = command["reply_to"]?.string, let id = command["id"]?.string else {
            throw FixtureError("sendCommand(responseTopic: false) needs a command with \"id\" and \"reply_to\": \(command)")
        }
        try await ensureSubscribed(replyTo)
        let after = mark()
        try await client.publish(commandTopic(device), payload: command.bytes, qos: .atLeastOnce)
        let message = try await waitForMessage(
            on: nil, kind: nil, after: after, timeout: timeout, "a reply to \(command) on \(replyTo)"
        ) { $0.topic == replyTo && $0["id"]?.string == id }
        return try reply(from: message, to: command.text)
    }

    /// Publishes `payload` (anything: not JSON, binary, huge) to the device's
    /// `cmd` topic with Response Topic + Correlation Data and returns the reply.
    @discardableResult
    public func sendRaw(_ payload: [UInt8], to device: Device, timeout: Duration = .seconds(10)) async throws -> Reply {
        let number = counter.wrappingAdd(1, ordering: .relaxed).newValue
        let correlation = Array("\(instance)/\(number)".utf8)
        let properties = MQTTProperties(responseTopic: replyTopic, correlationData: correlation)
        let after = mark()
        try await client.publish(commandTopic(device), payload: payload, qos: .atLeastOnce, properties: properties)
        let shown = String(decoding: payload.prefix(300), as: UTF8.self)
        let replyTopic = self.replyTopic
        let message = try await waitForMessage(
            on: nil, kind: nil, after: after, timeout: timeout, "a reply from \(device) to the command \(shown)"
        ) { $0.topic == replyTopic && $0.properties.correlationData == correlation }
        return try reply(from: message, to: shown)
    }

    private func reply(from message: Message, to command: String) throws -> Reply {
        guard let json = message.json, json.object != nil else {
            throw FixtureError("the reply to \(command) is not a JSON object: \(message)")
        }
        return Reply(json: json, message: message)
    }

    /// `{root}/{site}/{device}/{kind}`.
    public func topic(_ kind: String, for device: Device) -> String {
        "\(root)/\(device.site)/\(device.device)/\(kind)"
    }

    public func commandTopic(_ device: Device) -> String { topic("cmd", for: device) }

    // MARK: Desired config

    /// Publishes the retained desired config `{ "version", "config" }` (QoS 1).
    public func publishDesired(version: Int, config: WireJSON, to device: Device) async throws {
        let document: WireJSON = ["version": .int(version), "config": config]
        try await publishDesired(raw: document.bytes, to: device)
    }

    /// Publishes any payload as the retained desired config (QoS 1).
    public func publishDesired(raw payload: [UInt8], to device: Device) async throws {
        try await client.publish(topic("config/desired", for: device), payload: payload, qos: .atLeastOnce, retain: true)
    }

    /// Clears a retained topic of the device (zero-length retained payload).
    public func clearRetained(_ kind: String, of device: Device) async throws {
        try await client.publish(topic(kind, for: device), payload: [], qos: .atLeastOnce, retain: true)
    }

    // MARK: What the broker retains

    /// What the broker retains on the device's `kind` topic *now*, as a new
    /// subscriber gets it (nil when nothing is retained). Uses a short-lived
    /// second client; decides "nothing" without sleeping: the broker sends
    /// retained messages right after SUBACK, so once a marker published
    /// after the subscription came back, anything retained has arrived.
    public func fetchRetained(_ kind: String, of device: Device, timeout: Duration = .seconds(10)) async throws -> Message? {
        var configuration = self.configuration
        configuration.clientID = "\(instance)-fetch-\(UUID().uuidString.prefix(6).lowercased())"
        configuration.cleanStart = true
        configuration.sessionExpiry = nil
        configuration.will = nil
        let fetcher = try MQTTClient(configuration: configuration)
        let collector = MessageCollector(fetcher)
        let topic = topic(kind, for: device)
        let marker = "fleetprobe/marker/\(configuration.clientID)"
        do {
            try await fetcher.connect()
            try await fetcher.subscribe([Subscription(topic, qos: .atLeastOnce), Subscription(marker, qos: .atLeastOnce)])
            try await fetcher.publish(marker, payload: Array("marker".utf8), qos: .atLeastOnce)
            try await collector.waitFor(1, on: marker, timeout: timeout)
        } catch {
            await fetcher.shutdown()
            throw error
        }
        await fetcher.shutdown()
        guard let retained = collector.messages(on: topic).first(where: { $0.retain }), !retained.payload.isEmpty else {
            return nil
        }
        return ProbeRecorder(root: root).makeMessage(retained, index: -1)
    }

    private func ensureSubscribed(_ topic: String) async throws {
        if topic.hasPrefix(root + "/") { return }
        let new = extraFilters.withLock { $0.insert(topic).inserted }
        if new { try await client.subscribe([Subscription(topic, qos: .atLeastOnce)]) }
    }

    // MARK: Checks

    /// Problems with the envelope every agent message carries: `ts` (RFC
    /// 3339 UTC with exactly three fraction digits), `epoch` and `seq`
    /// (integers ≥ 0), `historical` (absent or `true`). Empty when fine.
    public static func envelopeProblems(_ message: Message) -> [String] {
        var problems: [String] = []
        guard let json = message.json, json.object != nil else {
            return ["\(message): not a JSON object"]
        }
        if let ts = json["ts"]?.string {
            if !isWriterTimestamp(ts) { problems.append("\(message): ts \"\(ts)\" is not RFC 3339 UTC with three fraction digits") }
        } else {
            problems.append("\(message): no ts")
        }
        if let epoch = json["epoch"], !(epoch.int.map { $0 >= 0 } ?? false) {
            problems.append("\(message): epoch is not an integer ≥ 0")
        } else if json["epoch"] == nil {
            problems.append("\(message): no epoch")
        }
        if let seq = json["seq"], !(seq.int.map { $0 >= 0 } ?? false) {
            problems.append("\(message): seq is not an integer ≥ 0")
        } else if json["seq"] == nil {
            problems.append("\(message): no seq")
        }
        if let historical = json["historical"], historical != .bool(true) {
            problems.append("\(message): historical is \(historical), expected true or absent")
        }
        return problems
    }

    /// Problems with a stream of agent messages of one device and topic
    /// (in arrival order) as the console would see them: envelope problems;
    /// per epoch, a gap in the distinct `seq`s; a `(epoch, seq)` that
    /// arrived again with different content (ignoring `historical`); and a
    /// new `(epoch, seq)` arriving after a higher one of the same epoch (out
    /// of order). QoS 1 duplicates themselves are not problems here (see
    /// ``duplicates(_:)``). Empty when fine.
    public static func sequenceProblems(_ messages: [Message]) -> [String] {
        var problems = messages.flatMap(envelopeProblems)
        var first: [Stamp: Message] = [:]
        var highest: [Int: Int] = [:]
        for message in messages {
            guard let stamp = message.stamp else { continue }
            if let earlier = first[stamp] {
                if earlier.json?.removing("historical") != message.json?.removing("historical") {
                    problems.append("\(stamp) arrived twice with different content: \(earlier) / \(message)")
                }
                continue
            }
            first[stamp] = message
            if let top = highest[stamp.epoch], stamp.seq < top {
                problems.append("\(stamp) arrived after seq \(top) of the same epoch (out of order): \(message)")
            }
            highest[stamp.epoch] = max(highest[stamp.epoch] ?? stamp.seq, stamp.seq)
        }
        let byEpoch = Dictionary(grouping: first.keys, by: \.epoch)
        for (epoch, stamps) in byEpoch.sorted(by: { $0.key < $1.key }) {
            let seqs = stamps.map(\.seq).sorted()
            for (a, b) in zip(seqs, seqs.dropFirst()) where b != a + 1 {
                problems.append("epoch \(epoch): gap between seq \(a) and \(b) (\(b - a - 1) missing)")
            }
        }
        return problems
    }

    /// Every `(epoch, seq)` that arrived more than once, with its copies in
    /// arrival order.
    public static func duplicates(_ messages: [Message]) -> [Stamp: [Message]] {
        Dictionary(grouping: messages.filter { $0.stamp != nil }, by: { $0.stamp! }).filter { $0.value.count > 1 }
    }

    /// The messages with duplicates removed (first arrival of each `(epoch, seq)` kept), in arrival order.
    public static func distinct(_ messages: [Message]) -> [Message] {
        var seen = Set<Stamp>()
        return messages.filter { message in
            guard let stamp = message.stamp else { return true }
            return seen.insert(stamp).inserted
        }
    }

    // MARK: Time

    /// `date` as RFC 3339 UTC with milliseconds (`2025-03-01T10:00:00.250Z`).
    public static func timestamp(_ date: Date) -> String {
        Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(date)
    }

    /// Parses an RFC 3339 date-time with or without fraction digits.
    public static func date(from text: String) -> Date? {
        if let date = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text) { return date }
        return try? Date.ISO8601FormatStyle().parse(text)
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`: how agents write times.
    public static func isWriterTimestamp(_ text: String) -> Bool {
        let chars = Array(text.utf8)
        guard chars.count == 24 else { return false }
        let pattern = Array("dddd-dd-ddTdd:dd:dd.dddZ".utf8)
        for (c, p) in zip(chars, pattern) {
            if p == UInt8(ascii: "d") {
                guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") else { return false }
            } else if c != p {
                return false
            }
        }
        return date(from: text) != nil
    }

}

/// Where a probe's messages are kept: parsed once on arrival, read under a lock.
final class ProbeRecorder: Sendable {
    private let rootPrefix: String
    private let log = Mutex<[FleetProbe.Message]>([])

    init(root: String) {
        rootPrefix = root + "/"
    }

    func record(_ message: MQTTMessage) {
        let arrival = Date()
        log.withLock { log in
            log.append(makeMessage(message, index: log.count, arrival: arrival))
        }
    }

    func makeMessage(_ message: MQTTMessage, index: Int, arrival: Date = Date()) -> FleetProbe.Message {
        var device: FleetProbe.Device?
        var kind: String?
        if message.topic.hasPrefix(rootPrefix) {
            let levels = message.topic.dropFirst(rootPrefix.count).split(separator: "/", omittingEmptySubsequences: false)
            if levels.count >= 3, !levels[0].hasPrefix("_"), !levels[0].isEmpty, !levels[1].isEmpty {
                device = FleetProbe.Device(site: String(levels[0]), device: String(levels[1]))
                kind = levels[2...].joined(separator: "/")
            }
        }
        let json = message.payload.isEmpty ? nil : try? WireJSON.parse(message.payload)
        return FleetProbe.Message(
            index: index, arrival: arrival, topic: message.topic, payload: message.payload, qos: message.qos,
            retained: message.retain, properties: message.properties, device: device, kind: kind, json: json)
    }

    func all() -> [FleetProbe.Message] { log.withLock { $0 } }

    func count() -> Int { log.withLock { $0.count } }

    func filter(_ isIncluded: (FleetProbe.Message) -> Bool) -> [FleetProbe.Message] {
        log.withLock { $0.filter(isIncluded) }
    }

    func first(where predicate: (FleetProbe.Message) -> Bool) -> FleetProbe.Message? {
        log.withLock { $0.first(where: predicate) }
    }
}
