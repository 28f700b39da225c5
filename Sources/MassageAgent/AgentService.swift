import FleetProtocol
import FleetSettings
import Foundation
import Logging
import MassageEngine
import Mosquitto
import ServiceLifecycle
import Synchronization

/// A massager on the fleet: runs the engine, speaks the wire contract over
/// MQTT, keeps events, usage and reported config in the durable outbox until
/// the broker has them, and applies desired configuration safely.
///
/// One `Service`; its `run()` returns after a graceful shutdown (SIGTERM):
/// a running session is soft-stopped (`session_aborted: shutdown`), the
/// outbox is flushed for a bounded time, `offline` with `reason: shutdown`
/// is published, and the MQTT connection is closed with DISCONNECT.
public final class AgentService: Service, Sendable {
    public static let version = "0.1.0"

    let configuration: AgentConfiguration
    let logger: Logger
    let database: AgentDatabase
    let outbox: Outbox
    /// Events the broker acknowledged, kept for `resync`.
    let deliveredEvents: DeliveredEvents
    let replies: CommandReplyLog
    let engine: MassageEngine
    /// Runs the engine's flushes (blocking SQLite) on a queue of their own;
    /// the driver's persistence loop and the tasks here await them.
    let persistence: EnginePersistence
    /// The shared control threads, or nil for the driver's own (see `Dependencies`).
    let controlGroup: ControlLoopGroup?
    let client: MQTTClient
    let epoch: UInt64
    let topics: DeviceTopics
    /// Programs from the programs directory, before any desired config.
    let builtinPrograms: ProgramLibrary
    let state: Mutex<AgentState>
    /// Wakes the outbox publisher (new entries, or connected again).
    let outboxSignal: AsyncStream<Void>.Continuation
    private let outboxWakeups: AsyncStream<Void>
    /// Numbers messages (stamped inside the outbox's write transaction, so
    /// the outbox order is the `seq` order).
    let stamper: MessageStamper

    struct AgentState {
        var connectedSince: Date?
        var applied: AppliedConfig
        var pendingDesired: DesiredConfig?
        var lastReported: ReportedConfig?
    }

    /// What `massage-agent` needs besides the configuration; tests inject these.
    public struct Dependencies: Sendable {
        public var hardware: any MassagerHardware
        public var clock: any WallClock
        public var eventLoopGroup: MQTTEventLoopGroup
        /// The control threads to share with the other engines of the
        /// process (`fleet-sim`); nil (a massager) for a thread of the
        /// agent's own, at the configured real-time priority.
        public var controlGroup: ControlLoopGroup?
        public init(hardware: (any MassagerHardware)? = nil, clock: any WallClock = SystemWallClock(), eventLoopGroup: MQTTEventLoopGroup = .shared,
                    controlGroup: ControlLoopGroup? = nil) {
            self.hardware = hardware ?? SimulatedMassager()
            self.clock = clock
            self.eventLoopGroup = eventLoopGroup
            self.controlGroup = controlGroup
        }
    }

    /// Opens the database and builds the engine. Synchronous, and it blocks
    /// on SQLite (migrations, the epoch, the command ids, the engine's
    /// ledger): once, at start-up, before any of the agent's tasks runs.
    public init(configuration: AgentConfiguration, dependencies: Dependencies = .init(), logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        try FileManager.default.createDirectory(at: configuration.dataDirectory, withIntermediateDirectories: true)
        database = try AgentDatabase(path: configuration.dataDirectory.appendingPathComponent("agent.sqlite").path)
        outbox = Outbox(database: database, limits: configuration.outbox)
        deliveredEvents = DeliveredEvents(database: database)
        replies = try CommandReplyLog(database: database)
        try replies.pruneAtStart()  // what aged out while the agent was stopped
        epoch = try database.nextEpoch()
        stamper = MessageStamper(epoch: epoch)
        topics = DeviceTopics(root: configuration.topicRoot, device: configuration.address)
        (outboxWakeups, outboxSignal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))

        // Configuration: the file's limits, tightened further by the last applied desired config.
        let fileLimits: EngineLimits
        do { fileLimits = try EngineLimits(overrides: configuration.limits) } catch {
            throw ConfigurationError(source: "limits", problems: error.problems.map { .init(key: "limits.\($0.key)", message: $0.message) })
        }
        do {
            builtinPrograms = try ProgramLibrary.load(directory: configuration.programsDirectory, limits: fileLimits)
        } catch {
            throw ConfigurationError(source: configuration.programsDirectory.path, problems: [.init(key: "programs_dir", message: error.description)])
        }
        var applied = AppliedConfig.load(from: configuration.dataDirectory, logger: logger)
        var resolved: ResolvedConfig
        do {
            resolved = try ResolvedConfig(validating: applied.config, file: configuration, fileLimits: fileLimits, builtins: builtinPrograms)
            if !resolved.selfCheck().isEmpty { throw ConfigRejection(reasons: resolved.selfCheck()) }
        } catch {
            // A persisted config that no longer validates (the programs or the file changed): run without it.
            logger.error("the applied configuration no longer validates; running with the file's settings", metadata: ["config.version": "\(applied.version)", "error": "\(error)"])
            applied = AppliedConfig(version: applied.version, config: DeviceConfig())
            resolved = try ResolvedConfig(validating: DeviceConfig(), file: configuration, fileLimits: fileLimits, builtins: builtinPrograms)
        }
        state = Mutex(AgentState(applied: applied))

        var engineConfig = EngineConfiguration()
        engineConfig.limits = resolved.limits
        engineConfig.scheduleGracePeriod = .milliseconds(Int64(configuration.scheduleGraceSeconds * 1000))
        engineConfig.eventBufferSize = 10_000
        // The engine's events reach the outbox through its storage, in the
        // transaction that writes the ledger change they go with.
        let signal = outboxSignal
        let storage = AgentEngineStorage(
            database: database, stamper: stamper, eventsTopic: topics.events, outboxLimits: configuration.outbox,
            onEventsStored: { [logger] dropped in
                if dropped > 0 { logger.warning("outbox full: dropped the oldest messages", metadata: ["outbox.dropped": "\(dropped)"]) }
                signal.yield()
            })
        engine = try MassageEngine(
            programs: resolved.programs, configuration: engineConfig, hardware: dependencies.hardware,
            clock: dependencies.clock,
            monotonicClock: (dependencies.clock as? any MonotonicClock) ?? SystemMonotonicClock(speed: Double(configuration.driverSpeed)),
            storage: storage)
        persistence = EnginePersistence(engine: engine)

        var mqtt = MQTTConfiguration(broker: configuration.broker, clientID: configuration.clientID)
        let willBody = Stamped(Status.offline(agentVersion: Self.version), envelope: Envelope(ts: Date(), epoch: epoch, seq: 0))
        mqtt.will = Will(topic: topics.status, payload: Array(try FleetJSON.encode(willBody)), qos: .atLeastOnce, retain: true,
                         properties: MQTTProperties(contentType: "application/json"))
        client = try MQTTClient(configuration: mqtt, eventLoopGroup: dependencies.eventLoopGroup, logger: logger)
        controlGroup = dependencies.controlGroup
    }

    var appliedVersion: UInt64 { state.withLock { $0.applied.version } }

    // MARK: Run

    public func run() async throws {
        logger.info("massage-agent starting", metadata: [
            "device": "\(configuration.address)", "epoch": "\(epoch)", "broker": "\(configuration.broker.host):\(configuration.broker.port)",
            "programs": "\(engine.programs.ids.joined(separator: ","))", "speed": "\(configuration.speed)"])
        let (shutdownRequests, requestShutdown) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        client.start()
        outboxSignal.yield()
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { io in
                io.addTask { await self.watchConnection() }
                io.addTask { await self.receiveMessages() }
                io.addTask { await self.publishOutbox() }
                io.addTask { await self.publishTelemetry() }
                io.addTask { await self.publishUsagePeriodically() }
                io.addTask { await self.pumpEngineEvents() }
                await withDiscardingTaskGroup { engineGroup in
                    engineGroup.addTask { await self.runEngine() }
                    // Wait for SIGTERM/SIGINT (or cancellation).
                    for await _ in shutdownRequests { break }
                    await self.releaseForShutdown()
                    engineGroup.cancelAll()
                }
                await self.drainForShutdown()
                io.cancelAll()
            }
        } onGracefulShutdown: {
            requestShutdown.yield()
        }
        // Cancellation without a graceful shutdown also ends the loop above
        // (task groups end their children); make sure the stream ends too.
        requestShutdown.finish()
        await client.shutdown()
        logger.info("massage-agent stopped", metadata: ["device": "\(configuration.address)"])
    }

    /// Soft-stops a running session (pressure released within 2 s) while the
    /// engine still ticks, so the session ends as `aborted: shutdown`.
    private func releaseForShutdown() async {
        let snapshot = engine.telemetry()
        guard snapshot.state != .idle else { return }
        logger.notice("shutdown: releasing the running session", metadata: ["session.id": "\(snapshot.sessionID?.rawValue ?? "")"])
        try? engine.stop(reason: .shutdown)
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(3)
        while engine.telemetry().state != .idle, clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// The control loop, on its own thread (real-time priority when
    /// configured), or on the process's shared control threads (fleet-sim).
    private func runEngine() async {
        let driver = EngineDriver(engine: engine, speed: configuration.driverSpeed, realtimePriority: configuration.realtimePriority,
                                  persistence: persistence, controlGroup: controlGroup)
        await withDiscardingTaskGroup { group in
            group.addTask { await driver.run() }
            if let priority = driver.realtimePriority {
                // Report what the control thread got, once it has started.
                let clock = ContinuousClock()
                let deadline = clock.now + .seconds(5)
                while driver.realtimeResult == -1, clock.now < deadline, !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(20))  // polls until the thread reports, with a deadline
                }
                let result = driver.realtimeResult
                if result == 0 {
                    logger.info("engine control loop runs at real-time priority", metadata: ["sched.priority": "\(priority)"])
                } else {
                    logger.warning("engine control loop could not get real-time priority; it runs on the normal scheduler (give the agent CAP_SYS_NICE)",
                                   metadata: ["sched.priority": "\(priority)", "errno": "\(result)"])
                }
            }
        }
    }

    /// Stores every pending engine change and event (one transaction each
    /// batch), delivers the outbox (bounded), then publishes `offline` with
    /// `reason: shutdown`.
    private func drainForShutdown() async {
        let clock = ContinuousClock()
        try? await persistence.flush()
        await enqueueUsage()
        let deadline = clock.now + .seconds(3)
        while await outbox.count > 0, client.isConnected, clock.now < deadline {
            outboxSignal.yield()
            try? await Task.sleep(for: .milliseconds(10))
        }
        let left = await outbox.count
        if left > 0 {
            logger.warning("shutdown: undelivered messages stay in the outbox for the next start", metadata: ["outbox.count": "\(left)"])
        }
        if client.isConnected {
            let offline = stamp(Status.offline(reason: .shutdown, agentVersion: Self.version))
            do {
                try await client.publish(topics.status, payload: offline, qos: .atLeastOnce, retain: true, properties: Self.json)
            } catch {
                logger.warning("shutdown: could not publish offline status", metadata: ["error": "\(error)"])
            }
        }
    }

    static let json = MQTTProperties(contentType: "application/json", payloadFormatIndicator: 1)

    // MARK: Stamping

    /// Encodes `body` with `ts`, `epoch` and the next `seq` of its topic.
    func stamp<Body: AgentMessage>(_ body: Body) -> [UInt8] {
        do {
            return try stamper.stamp(body)
        } catch {
            logger.error("could not encode a message", metadata: ["topic.kind": "\(Body.topicKind)", "error": "\(error)"])
            return []
        }
    }

    /// Stamps and stores a message for delivery, and returns once it is
    /// stored (then wakes the publisher: written before published). It is
    /// stamped inside the outbox's write transaction, so the outbox order is
    /// the `seq` order; the task awaits the write without holding a thread.
    func enqueue<Body: AgentMessage>(_ body: Body, topic: String) async {
        do {
            let dropped = try await outbox.enqueue(topic: topic, qos: Body.topicKind.qos, retain: Body.topicKind.retained) {
                Data(self.stamp(body))
            }
            if dropped > 0 { logger.warning("outbox full: dropped the oldest messages", metadata: ["outbox.dropped": "\(dropped)"]) }
        } catch {
            logger.error("could not write to the outbox", metadata: ["error": "\(error)"])
        }
        outboxSignal.yield()
    }

    /// Usage as storage holds it: retained usage never goes backwards, even
    /// after a crash that loses the last seconds of a session.
    func enqueueUsage() async {
        let dropped = (try? await outbox.droppedTotal()) ?? 0
        await enqueue(WireMapping.usage(engine.durableUsage(), outboxDropped: dropped), topic: topics.usage)
    }

    func statusBody() -> Status {
        Status.online(agentVersion: Self.version, programs: engine.programs.ids, configVersion: appliedVersion,
                      capabilities: [.customSteps, .schedule, .pause, .adjustIntensity, .breathingCue, .pressureSensor])
    }

    func publishStatus() async {
        guard client.isConnected else { return }
        do {
            try await client.publish(topics.status, payload: stamp(statusBody()), qos: .atLeastOnce, retain: true, properties: Self.json)
        } catch {
            logger.warning("could not publish status", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Loops

    /// On every (re)connection: birth, subscriptions, outbox delivery.
    private func watchConnection() async {
        var wasConnected = false
        for await change in client.connectionStates {
            defer { wasConnected = change.isConnected }
            if wasConnected && change.isConnected { continue } // the same connection, seen twice
            guard case .connected = change else {
                if case .disconnected(let error, let retry) = change {
                    logger.info("broker connection down", metadata: ["error": "\(error?.message ?? "-")", "retry_in": "\(retry.map { "\($0)" } ?? "-")"])
                }
                continue
            }
            state.withLock { $0.connectedSince = Date() }
            logger.info("connected to the broker", metadata: ["broker": "\(configuration.broker.host):\(configuration.broker.port)"])
            // Subscribe before the birth: a console that reacts to "online" must find us listening.
            do {
                try await client.subscribe([Subscription(topics.cmd, qos: .atLeastOnce), Subscription(topics.configDesired, qos: .atLeastOnce)])
            } catch {
                logger.warning("subscribe failed; it is retried after the next reconnect", metadata: ["error": "\(error)"])
            }
            await publishStatus()
            outboxSignal.yield()
        }
    }

    private func receiveMessages() async {
        for await message in client.messages {
            if message.topic == topics.cmd {
                await handleCommand(message)
            } else if message.topic == topics.configDesired {
                await handleDesiredConfig(message.payload)
            } else {
                logger.debug("ignored a message on an unexpected topic", metadata: ["topic": "\(message.topic)"])
            }
        }
    }

    /// Delivers the outbox in order while connected; an entry is removed only
    /// after the broker acknowledged it. Entries that waited through an
    /// outage (created before this connection) go out with `historical: true`.
    private func publishOutbox() async {
        // Wake on signals, and at least every second in case one was missed.
        await withDiscardingTaskGroup { group in
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    self.outboxSignal.yield()
                }
            }
            for await _ in outboxWakeups {
                await deliverOutbox()
            }
            group.cancelAll()
        }
    }

    private func deliverOutbox() async {
        while client.isConnected, !Task.isCancelled {
            let batch: [OutboxEntry]
            do { batch = try await outbox.peek(limit: 100) } catch {
                logger.error("could not read the outbox", metadata: ["error": "\(error)"])
                return
            }
            guard !batch.isEmpty else { return }
            let since = state.withLock { $0.connectedSince } ?? .distantFuture
            var delivered: [Int64] = []
            var events: [OutboxEntry] = []
            for entry in batch {
                let payload = entry.createdAt < since ? Self.markHistorical(entry.payload) : entry.payload
                do {
                    try await client.publish(entry.topic, payload: Array(payload), qos: QoS(rawValue: entry.qos) ?? .atLeastOnce,
                                             retain: entry.retain, properties: Self.json)
                    delivered.append(entry.id)
                    if entry.topic == topics.events { events.append(entry) }
                } catch {
                    break
                }
            }
            // Kept before they leave the outbox: a SIGKILL in between sends one again, never loses it.
            do { try await deliveredEvents.record(events) } catch {
                logger.error("could not keep the delivered events for resync", metadata: ["error": "\(error)"])
            }
            do { try await outbox.remove(delivered) } catch {
                logger.error("could not remove delivered messages from the outbox", metadata: ["error": "\(error)"])
            }
            if delivered.count < batch.count { return }
        }
    }

    static func markHistorical(_ payload: Data) -> Data {
        guard var object = (try? JSONSerialization.jsonObject(with: payload)) as? [String: Any] else { return payload }
        object["historical"] = true
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? payload
    }

    /// Telemetry every interval; wakes at least once a second so a new
    /// interval from a desired config takes effect within a second.
    private func publishTelemetry() async {
        let clock = ContinuousClock()
        var last = clock.now
        while !Task.isCancelled {
            let interval = Duration.milliseconds(Int64(telemetryInterval * 1000))
            let due = last + interval
            try? await Task.sleep(until: min(due, clock.now + .seconds(1)), clock: clock)
            if !Task.isCancelled, clock.now >= due {
                last = clock.now
                await publishTelemetryNow()
            }
        }
    }

    var telemetryInterval: Double {
        state.withLock { $0.applied.config.telemetryIntervalSeconds } ?? configuration.telemetryIntervalSeconds
    }

    /// One telemetry message now (also right after a config is applied, so the
    /// console sees the device healthy under it without waiting an interval).
    func publishTelemetryNow() async {
        guard client.isConnected else { return }
        let body = WireMapping.telemetry(engine.telemetry(), interval: telemetryInterval)
        _ = try? await client.publish(topics.telemetry, payload: stamp(body), qos: .atMostOnce, properties: Self.json)
    }

    private func publishUsagePeriodically() async {
        while !Task.isCancelled {
            let interval = state.withLock { $0.applied.config.usageIntervalSeconds } ?? configuration.usageIntervalSeconds
            try? await Task.sleep(for: .milliseconds(Int64(interval * 1000)))
            if !Task.isCancelled { await enqueueUsage() }
        }
    }

    /// Reacts to engine events (they reach the outbox through the engine's
    /// storage). After a session ends: its batch stored, then usage, and any
    /// desired config that waited for it.
    private func pumpEngineEvents() async {
        for await event in engine.events {
            switch event.kind {
            case .sessionCompleted, .sessionAborted:
                try? await persistence.flush()
                await enqueueUsage()
                await applyPendingConfig()
            default:
                break
            }
        }
    }
}

/// The topics of one device.
struct DeviceTopics: Sendable {
    let status, telemetry, events, usage, cmd, configDesired, configReported: String

    init(root: TopicRoot, device: DeviceAddress) {
        status = root.topic(.status, for: device)
        telemetry = root.topic(.telemetry, for: device)
        events = root.topic(.events, for: device)
        usage = root.topic(.usage, for: device)
        cmd = root.topic(.cmd, for: device)
        configDesired = root.topic(.configDesired, for: device)
        configReported = root.topic(.configReported, for: device)
    }
}

