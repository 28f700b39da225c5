import FleetProtocol
import Foundation
import Logging
import Mosquitto
import ServiceLifecycle
import Synchronization

/// A simulated massager that speaks the wire contract and nothing more
/// (issue 23, point 4): retained status (online, with the offline will),
/// telemetry at its interval, events and retained usage, replies to
/// commands and reports for desired configs. No engine, no control thread,
/// no database, no outbox: one MQTT connection and a few counters, so that
/// `fleet-sim --thin` can put 10,000 devices beside a broker and a console
/// on a small machine. It is a load for the console, not a massager: a
/// started session completes at once (`session_started`, then
/// `session_completed` with no pressure applied), and nothing it sends is
/// kept across a disconnect (QoS 1 to the broker, no outbox). Its epoch is
/// the start time in milliseconds, so a restarted thin device's messages
/// still order after its earlier ones.
public final class ThinDevice: Service, Sendable {
    public let address: DeviceAddress
    let topics: DeviceTopics
    let client: MQTTClient
    let stamper: MessageStamper
    let telemetrySeconds: Double
    let programs: [String]
    let logger: Logger
    private let state = Mutex(Counters())

    struct Counters {
        var appliedVersion: UInt64 = 0
        var sessions = SessionCounts()
        var nextSession = 0
    }

    static let version = "thin-1"

    public init(configuration: AgentConfiguration, programs: [String], eventLoopGroup: MQTTEventLoopGroup = .shared,
                logger: Logger = Logger(label: "massagefleet.thin-device")) throws {
        address = configuration.address
        topics = DeviceTopics(root: configuration.topicRoot, device: address)
        stamper = MessageStamper(epoch: UInt64(Date().timeIntervalSince1970 * 1000))
        telemetrySeconds = configuration.telemetryIntervalSeconds
        self.programs = programs
        self.logger = logger
        var mqtt = MQTTConfiguration(broker: configuration.broker, clientID: configuration.clientID)
        let will = Stamped(Status.offline(agentVersion: Self.version), envelope: Envelope(ts: Date(), epoch: stamper.epoch, seq: 0))
        mqtt.will = Will(topic: topics.status, payload: Array(try FleetJSON.encode(will)), qos: .atLeastOnce, retain: true,
                         properties: MQTTProperties(contentType: "application/json"))
        client = try MQTTClient(configuration: mqtt, eventLoopGroup: eventLoopGroup, logger: logger)
    }

    public var isConnected: Bool { client.isConnected }

    public func run() async throws {
        client.start()
        await withDiscardingTaskGroup { group in
            group.addTask { await self.watchConnection() }
            group.addTask { await self.receiveMessages() }
            group.addTask { await self.publishTelemetry() }
            // Until SIGTERM/SIGINT (or cancellation).
            try? await gracefulShutdown()
            if client.isConnected {
                await publish(Status.offline(reason: .shutdown, agentVersion: Self.version), to: topics.status, retain: true)
            }
            group.cancelAll()
        }
        await client.shutdown()
    }

    /// On every (re)connection: subscriptions, then the birth and usage.
    private func watchConnection() async {
        for await change in client.connectionStates {
            guard case .connected = change else { continue }
            do {
                try await client.subscribe([Subscription(topics.cmd, qos: .atLeastOnce), Subscription(topics.configDesired, qos: .atLeastOnce)])
            } catch {
                logger.warning("subscribe failed; it is retried after the next reconnect", metadata: ["device": "\(address)", "error": "\(error)"])
            }
            await publish(statusBody(), to: topics.status, retain: true)
            await publishUsage()
        }
    }

    private func receiveMessages() async {
        for await message in client.messages {
            if message.topic == topics.cmd {
                await handleCommand(message)
            } else if message.topic == topics.configDesired, !message.payload.isEmpty {
                await handleDesiredConfig(message.payload)
            }
        }
    }

    private func publishTelemetry() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: .milliseconds(Int64(telemetrySeconds * 1000))) } catch { return }
            guard client.isConnected else { continue }
            let body = Telemetry(sessionState: .idle, pressureMMHg: [:], motorTempC: 30, intervalSeconds: telemetrySeconds)
            do {
                try await client.publish(topics.telemetry, payload: try stamper.stamp(body), qos: .atMostOnce, properties: Self.json)
            } catch {
                logger.debug("telemetry not sent", metadata: ["device": "\(address)", "error": "\(error)"])
            }
        }
    }

    // MARK: Commands and configs

    /// Replies as the agent does (decode, expiry, a start's window), then
    /// answers the request without an engine.
    func handleCommand(_ message: MQTTMessage) async {
        let target = message.properties.responseTopic
        let reply: OutgoingReply
        var replyTo: String?
        switch decodeCommand(message.payload) {
        case .failure(let rejection):
            reply = .failure(id: rejection.id, error: rejection.error)
            replyTo = rejection.replyTo
        case .success(let incoming):
            let command = incoming.command
            replyTo = command.replyTo
            if let error = command.expiryError(now: Date()) ?? command.startWindowError(now: Date(), maxTTL: 3600) {
                reply = .failure(id: command.id, error: error)
            } else {
                reply = await answer(incoming.request, id: command.id)
            }
        }
        guard let topic = target ?? replyTo, TopicRoot.isValidPublishTopic(topic),
              let bytes = try? Array(FleetJSON.encode(reply)) else { return }
        do {
            try await client.publish(topic, payload: bytes, qos: .atLeastOnce,
                                     properties: MQTTProperties(correlationData: message.properties.correlationData, contentType: "application/json"))
        } catch {
            logger.debug("reply not sent", metadata: ["device": "\(address)", "error": "\(error)"])
        }
    }

    private func answer(_ request: CommandRequest, id: String) async -> OutgoingReply {
        switch request {
        case .ping:
            return .success(id: id, result: PingResult(epoch: stamper.epoch))
        case .startSession(let params):
            let (session, program) = state.withLock { s -> (String, String) in
                s.nextSession += 1
                s.sessions.started += 1
                s.sessions.completed += 1
                return ("thin-\(stamper.epoch)-\(s.nextSession)", Self.programName(params.plan))
            }
            await publish(Event(type: .sessionStarted, sessionID: session, program: program), to: topics.events)
            await publish(Event(type: .sessionCompleted, sessionID: session, program: program), to: topics.events)
            await publishUsage()
            return .success(id: id, result: StartSessionResult(sessionID: session, program: program, durationSeconds: 0))
        default:
            return .failure(id: id, error: ProtocolError(code: .unknownAction, message: "a thin simulated device (fleet-sim --thin) answers ping and start_session only"))
        }
    }

    /// Applies any structurally valid config (there is no engine to check
    /// it against) and reports it; reports a rejection with its reasons.
    func handleDesiredConfig(_ payload: [UInt8]) async {
        switch DesiredConfig.decode(payload) {
        case .failure(let rejection):
            let applied = state.withLock { $0.appliedVersion }
            await publish(rejection.reported(appliedVersion: applied), to: topics.configReported, retain: true)
        case .success(let desired):
            let applied = state.withLock { s -> UInt64 in
                s.appliedVersion = max(s.appliedVersion, desired.version)
                return s.appliedVersion
            }
            await publish(ReportedConfig(version: applied, state: .applied, appliedVersion: applied), to: topics.configReported, retain: true)
        }
    }

    /// The program id a reply and the events carry: `_custom` for custom steps.
    static func programName(_ plan: SessionPlan) -> String {
        switch plan {
        case .program(let id): id.rawValue
        case .steps: "_custom"
        }
    }

    // MARK: Publishing

    static let json = MQTTProperties(contentType: "application/json", payloadFormatIndicator: 1)

    private func statusBody() -> Status {
        Status.online(agentVersion: Self.version, programs: programs, configVersion: state.withLock { $0.appliedVersion }, capabilities: [])
    }

    private func publishUsage() async {
        await publish(Usage(sessions: state.withLock { $0.sessions }), to: topics.usage, retain: true)
    }

    /// Stamps and publishes at the topic kind's QoS (no outbox: lost if the connection is).
    private func publish<Body: AgentMessage>(_ body: Body, to topic: String, retain: Bool = false) async {
        do {
            let qos: QoS = Body.topicKind.qos == 0 ? .atMostOnce : .atLeastOnce
            try await client.publish(topic, payload: try stamper.stamp(body), qos: qos, retain: retain, properties: Self.json)
        } catch {
            logger.debug("not sent", metadata: ["device": "\(address)", "topic.kind": "\(Body.topicKind)", "error": "\(error)"])
        }
    }
}
