import FleetProtocol
import Foundation
import Mosquitto
import ServiceLifecycle
import Synchronization

/// Commands: what the API accepted (CommandService+Submit.swift), sent to
/// each target that is online, correlated with the devices' replies, timed
/// out and expired; and the `resync` requests ingest and health ask for.
/// The state of each device's copy changes only through
/// `CommandTargetResult.apply` (CommandDispatch.swift, pure). A changed
/// record goes to the pending batch and is stored with the next commit
/// (≤ 100 ms), so neither a reply nor ingest waits on the database.
///
/// Only the coordinator sends and sweeps. Follow-up work — a device came
/// online, a new coordinator's first round, a resync — arrives through
/// `work` and is done on this service's own task, so ingest never waits on
/// the network.
final class CommandService: Service, CoordinatedWork, Sendable {
    let context: ConsoleContext
    let state: FleetState
    let store: any CommandStore
    let client: MQTTClient
    let topics: ConsoleTopics
    let coordinator: Coordinator
    let audit: AuditTrail
    /// The commands with a copy not yet final, by id (the coordinator's).
    let inFlight: Mutex<[String: CommandRecord]>
    /// Commands the coordinator has taken up (replicas: accepted by any replica).
    let adopted = Mutex<Set<String>>([])
    private let work: AsyncStream<Work>.Continuation
    private let workItems: AsyncStream<Work>

    enum Work: Sendable {
        case dispatch(DeviceAddress)
        /// Everything queued (a new coordinator's first round).
        case dispatchAll
        case resync(DeviceAddress)
    }

    init(context: ConsoleContext, state: FleetState, store: any CommandStore, client: MQTTClient, topics: ConsoleTopics,
         coordinator: Coordinator, audit: AuditTrail, unfinished: [CommandRecord]) {
        self.context = context
        self.state = state
        self.store = store
        self.client = client
        self.topics = topics
        self.coordinator = coordinator
        self.audit = audit
        inFlight = Mutex(Dictionary(uniqueKeysWithValues: unfinished.map { ($0.id, $0) }))
        (workItems, work) = AsyncStream.makeStream(of: Work.self, bufferingPolicy: .bufferingNewest(10_000))
    }

    /// The follow-up work, and every second the sweep.
    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.sweepLoop() }
                for await item in self.workItems {
                    guard self.coordinator.isCoordinator else { continue }
                    switch item {
                    case .dispatch(let address): await self.dispatchQueued(for: address)
                    case .dispatchAll: await self.dispatchQueued()
                    case .resync(let address): await self.sendResync(to: address)
                    }
                }
                group.cancelAll()
            }
        }
    }

    /// A device came online: what waits for it is sent.
    func deviceOnline(_ address: DeviceAddress) { work.yield(.dispatch(address)) }

    /// Asks the device for a `resync` (ingest saw a gap, or health found one).
    func requestResync(_ address: DeviceAddress) { work.yield(.resync(address)) }

    /// The broker connection is (back) up: everything queued is sent.
    func connected() async {
        if coordinator.isCoordinator { await dispatchQueued() }
    }

    // MARK: Changing hands with the lease

    /// The unfinished commands the previous coordinator left. A copy it sent
    /// without an answer is sent again: the device answers a repeated
    /// command id with its first reply and runs nothing twice.
    func takeOver() async -> Bool {
        do {
            let unfinished = try await store.unfinishedCommands()
            inFlight.withLock { all in
                for var record in unfinished where all[record.id] == nil {
                    for i in record.results.indices where record.results[i].state == .sent { record.results[i].state = .queued }
                    all[record.id] = record
                }
            }
            adopted.withLock { $0.formUnion(unfinished.map(\.id)) }
            return true
        } catch {
            context.logger.error("could not load the previous coordinator's commands; taking the lease up at the next renewal", metadata: ["error": "\(error)"])
            return false
        }
    }

    func coordinationBegan() { work.yield(.dispatchAll) }

    /// A late reply here must not overwrite the record the next coordinator keeps.
    func handOver() { inFlight.withLock { $0 = [:] } }

    /// The coordinator takes up commands another replica accepted (they
    /// wait `queued` in the database) and sends them.
    func adoptSubmitted() async {
        guard coordinator.usesLease, coordinator.isCoordinator else { return }
        guard let unfinished = try? await store.unfinishedCommands() else { return }
        let new = adopted.withLock { seen in unfinished.filter { seen.insert($0.id).inserted } }
        guard !new.isEmpty else { return }
        inFlight.withLock { all in for record in new where all[record.id] == nil { all[record.id] = record } }
        for record in new {
            for result in record.results where result.state == .queued {
                if let address = try? DeviceAddress(site: result.site, device: result.device) { await send(commandID: record.id, to: address) }
            }
        }
    }

    // MARK: Sending

    /// Sends one device's copy of a command if the device is online.
    func send(commandID: String, to address: DeviceAddress) async {
        guard let record = inFlight.withLock({ $0[commandID] }),
              let result = record.results.first(where: { $0.site == address.site.rawValue && $0.device == address.device.rawValue }),
              result.state == .queued else { return }
        let now = context.clock.now()
        if now >= record.expiresAt {
            update(commandID, address, .expire, at: now)
            return
        }
        let online = state.model.withLock { $0.devices[address]?.online ?? false }
        guard online, client.isConnected else { return }
        guard let request = try? CommandRequest(action: Action(rawValue: record.action), params: record.params) else {
            update(commandID, address, .undecodable, at: now)
            return
        }
        let command = Command(id: "\(record.id)/\(address.site)/\(address.device)", request: request, expiresAt: record.expiresAt)
        // Claim the copy, queued → sent in one step: of the paths that dispatch
        // (submit, a device back online, a new coordinator), one sends it.
        guard update(commandID, address, .claim, at: now) else { return }
        do {
            let payload = Array(try FleetJSON.encode(command))
            try await client.publish(context.configuration.topicRoot.topic(.cmd, for: address), payload: payload, qos: .atLeastOnce,
                                     properties: MQTTProperties(responseTopic: topics.replyTopic(for: address),
                                                                correlationData: ReplyCorrelation(commandID: record.id, address: address, nonce: result.nonce ?? "").bytes,
                                                                messageExpiryInterval: UInt32(max(1, record.expiresAt.timeIntervalSince(now).rounded(.up))),
                                                                contentType: "application/json"))
        } catch {
            context.logger.warning("could not send a command; it stays queued", metadata: ["command.id": "\(commandID)", "device": "\(address)", "error": "\(error)"])
            update(commandID, address, .sendFailed, at: context.clock.now())
        }
    }

    /// Sends what waits for `address` (it came back online), or for everyone after a reconnect.
    func dispatchQueued(for address: DeviceAddress? = nil) async {
        let waiting = inFlight.withLock { all in
            all.values.flatMap { record in
                record.results.filter { $0.state == .queued && (address == nil || ($0.site == address!.site.rawValue && $0.device == address!.device.rawValue)) }
                    .compactMap { r in (try? DeviceAddress(site: r.site, device: r.device)).map { (record.id, $0) } }
            }
        }
        await sendAll(waiting)
    }

    /// Sends many copies at once: each publish waits for the broker's
    /// acknowledgement, and one after another a start across a site's 500
    /// massagers took 3 s before the last was even sent (fleet-bench start).
    /// Each copy is claimed under the lock (`update(.claim)`), so sending
    /// them together sends none twice.
    func sendAll(_ copies: [(commandID: String, address: DeviceAddress)]) async {
        await withTaskGroup(of: Void.self) { group in
            for (id, address) in copies {
                group.addTask { await self.send(commandID: id, to: address) }
            }
        }
    }

    func sendResync(to address: DeviceAddress) async {
        guard client.isConnected else { return }
        let command = Command(id: "resync-\(UUID().uuidString.lowercased())", request: .resync, expiresAt: context.clock.now().addingTimeInterval(60))
        do {
            try await client.publish(context.configuration.topicRoot.topic(.cmd, for: address), payload: Array(try FleetJSON.encode(command)), qos: .atLeastOnce,
                                     properties: MQTTProperties(responseTopic: topics.replyTopic(for: address), correlationData: ReplyCorrelation(commandID: command.id, address: address, nonce: "").bytes))
            context.metrics.resyncs.increment()
        } catch {
            context.logger.warning("could not send resync", metadata: ["device": "\(address)", "error": "\(error)"])
        }
    }

    // MARK: Replies, timeouts

    /// A message on this console's reply topics. Counted as malformed and
    /// dropped unless it is live (a retained reply is never a live answer,
    /// and a device that published its reply with retain must not have it
    /// applied again at every restart), on exactly the replying device's
    /// own topic, for that device's copy, with that copy's nonce.
    func handleReply(_ message: MQTTMessage) {
        let (metrics, logger) = (context.metrics, context.logger)
        if message.retain {
            metrics.malformed.increment()
            logger.debug("ignored a retained command reply", metadata: ["topic": "\(message.topic.prefix(200))", "bytes": "\(message.payload.count)"])
            return
        }
        guard let sender = topics.replyingDevice(message.topic) else {
            metrics.malformed.increment()
            logger.debug("ignored a reply on a topic that is no device's reply topic", metadata: ["topic": "\(message.topic.prefix(200))"])
            return
        }
        guard let correlation = message.properties.correlationData.flatMap(ReplyCorrelation.init) else {
            metrics.malformed.increment()
            return
        }
        let (id, address) = (correlation.commandID, correlation.address)
        // The broker let only `sender` write this topic: it answers for itself only.
        guard address == sender else {
            metrics.malformed.increment()
            logger.warning("ignored a command reply for another device", metadata: ["command.id": "\(id)", "device": "\(address)", "sender": "\(sender)"])
            return
        }
        // Only the device the copy was sent to knows its nonce (resync requests carry none).
        let expected = inFlight.withLock { $0[id]?.results.first { $0.site == address.site.rawValue && $0.device == address.device.rawValue }?.nonce }
        if let expected, expected != correlation.nonce {
            metrics.malformed.increment()
            logger.warning("ignored a command reply with the wrong correlation for its device", metadata: ["command.id": "\(id)", "device": "\(address)"])
            return
        }
        guard case .success(let reply) = FleetJSON.decode(CommandReply.self, from: message.payload) else {
            metrics.malformed.increment()
            return
        }
        update(id, address, .reply(reply.outcome), at: context.clock.now())
    }

    /// Applies `transition` to one device's copy (`CommandTargetResult.apply`,
    /// the pure state machine) and returns whether its state allowed it. A
    /// changed record is persisted with the next batch.
    @discardableResult
    func update(_ commandID: String, _ address: DeviceAddress, _ transition: CommandTransition, at now: Date) -> Bool {
        let record = inFlight.withLock { all -> CommandRecord? in
            guard var record = all[commandID],
                  let i = record.results.firstIndex(where: { $0.site == address.site.rawValue && $0.device == address.device.rawValue }),
                  record.results[i].apply(transition, at: now) else { return nil }
            if record.isFinished { all[commandID] = nil } else { all[commandID] = record }
            return record
        }
        guard let record else { return false }
        var finished: AuditDraft?
        if record.isFinished {
            let counts = Dictionary(grouping: record.results, by: \.state).map { "\($0.value.count) \($0.key.rawValue)" }.sorted().joined(separator: ", ")
            finished = AuditDraft(actor: record.createdBy, action: "command.\(record.action).finished",
                                  targets: record.results.map { "\($0.site)/\($0.device)" }.joined(separator: ","), outcome: counts, detail: record.id)
        }
        state.pending.withLock { b in
            b.commands[record.id] = record
            if let finished { b.audits.append(finished) }
        }
        state.requestFlush()
        return true
    }

    /// Every second: sent without a reply past the timeout → timed_out;
    /// queued past expires_at → expired.
    func sweepLoop() async {
        while !Task.isCancelled {
            try? await context.clock.sleep(for: .seconds(1))
            await sweep()
        }
    }

    func sweep() async {
        guard coordinator.isCoordinator else { return }
        await adoptSubmitted()
        let now = context.clock.now()
        let timeout = context.configuration.health.commandTimeoutSeconds
        let due = inFlight.withLock { all in all.values.flatMap { record in record.sweep(now: now, timeout: timeout).map { (record.id, $0.0, $0.1) } } }
        for (id, address, transition) in due { update(id, address, transition, at: now) }
    }
}
