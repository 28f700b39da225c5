import FleetProtocol
import Foundation
import Mosquitto

extension ConsoleCore {
    /// Every message under the root, in two stages on two tasks: this one
    /// parses topics and decodes payloads (pure, and most of ingest's CPU),
    /// the other applies them to the fleet model and the pending batch in
    /// the same order. With one task for both, ingest was one thread's work
    /// at ~20 µs per event; split, it keeps up with a stream that one thread
    /// could not. Never throws, never blocks on the database (writes go to the
    /// pending batch, committed by `flushLoop`).
    func ingest() async {
        let handoff = IngestHandoff(capacity: Self.handoffCapacity)
        await withDiscardingTaskGroup { group in
            group.addTask {
                await handoff.drain { item in self.liveness.applying { self.handle(item) } }
            }
            for await message in client.messages {
                await handoff.append(classify(message))
            }
            handoff.finish()
        }
    }

    /// Decoded messages waiting for the applying stage, at most.
    static let handoffCapacity = 10_000

    /// Handles one message from the broker: classifies its topic, decodes it
    /// and applies it to the fleet model and the pending batch. Anything
    /// malformed is counted and dropped; this never throws and never waits on
    /// the network or the database. Public so that fuzzing can drive ingest
    /// with any topic and payload without a broker.
    public func receive(_ message: MQTTMessage) {
        handle(classify(message))
    }

    /// One message from the broker, its topic parsed and its payload decoded.
    enum Received: Sendable {
        case reply(MQTTMessage)
        case desired(DeviceAddress, DesiredConfig)
        /// `retained`: the broker sent it from its retained store (at a
        /// subscribe), not as it was published.
        case payload(AgentPayload, from: DeviceAddress, raw: [UInt8], retained: Bool)
        case rejected(MQTTMessage, why: String)
        case ignored
    }

    /// The first stage: what the message is. Pure: it reads no model.
    func classify(_ message: MQTTMessage) -> Received {
        metrics.ingested.increment()
        if isReplyTopic(message.topic) { return .reply(message) }
        guard let topic = configuration.topicRoot.parse(message.topic) else {
            return .rejected(message, why: "topic outside the contract")
        }
        guard case .device(let address, let kind) = topic else { return .ignored }
        switch kind {
        case .cmd:
            return .ignored // commands (ours or another console's)
        case .configDesired:
            guard !message.payload.isEmpty, case .success(let desired) = DesiredConfig.decode(message.payload) else { return .ignored }
            return .desired(address, desired)
        default:
            break
        }
        switch AgentPayload.decode(kind: kind, payload: message.payload) {
        case .failure(let error):
            if message.payload.isEmpty && message.retain { return .ignored } // a cleared retained topic
            return .rejected(message, why: error.message)
        case .success(let payload):
            return .payload(payload, from: address, raw: message.payload, retained: message.retain)
        }
    }

    /// The second stage: applies a classified message.
    func handle(_ received: Received) {
        switch received {
        case .reply(let message): handleReply(message)
        case .desired(let address, let desired): handleDesired(address, desired)
        case .payload(let payload, let address, let raw, let retained): apply(payload, from: address, raw: raw, retained: retained)
        case .rejected(let message, let why): reject(message, why)
        case .ignored: break
        }
    }

    private func reject(_ message: MQTTMessage, _ why: String) {
        metrics.malformed.increment()
        logger.debug("ignored a malformed message", metadata: ["topic": "\(message.topic.prefix(200))", "bytes": "\(message.payload.count)", "why": "\(why.prefix(200))"])
    }

    private func handleDesired(_ address: DeviceAddress, _ desired: DesiredConfig) {
        model.withLock { m in
            var r = m.record(address)
            if r.desired?.version != desired.version { r.desiredSince = clock.now() }
            r.desired = desired
            m.devices[address] = r
        }
        pending.withLock { _ = $0.dirtyDevices.insert(address) }
    }

    /// Applies a decoded message (`FleetModel.apply`, the pure part) and
    /// performs what it asks: metrics, logs, the pending batch, a resync.
    func apply(_ payload: AgentPayload, from address: DeviceAddress, raw: [UInt8], retained: Bool = false) {
        let now = clock.now()
        let lag = now.timeIntervalSince(payload.envelope.ts)
        // Lag from live telemetry and events (a will carries its connect time, so status is left out).
        switch payload {
        case .telemetry, .event:
            if !payload.envelope.historical, lag.isFinite { metrics.lag.set(max(0, lag)) }
        default:
            break
        }
        let effects = model.withLock { $0.apply(payload, from: address, raw: raw, retained: retained, now: now, rules: ingestRules) }
        if let drop = effects.overQuota {
            metrics.quotaDropped.increment()
            pending.withLock { _ = $0.dirtyDevices.insert(address) } // the count is kept in the device's row
            if drop == .firstDrop {
                logger.warning("a device sends more than its ingest quota: its messages are dropped until it slows down", metadata: [
                    "device": "\(address)", "messages_per_s": "\(configuration.deviceQuota.messagesPerSecond)", "bytes_per_s": "\(configuration.deviceQuota.bytesPerSecond)",
                ])
            }
            return
        }
        if effects.ignoredRevoked {
            metrics.revokedIgnored.increment()
            return
        }
        if effects.readmitted {
            logger.notice("a forgotten device is heard from live: provisioned again, it starts fresh", metadata: ["device": "\(address)"])
        }
        if effects.sequenceFault {
            pending.withLock { _ = $0.dirtyDevices.insert(address) } // the fault is kept in the device's row
            metrics.sequenceFaults.increment()
            logger.warning("refused an event with an implausible seq: a device fault", metadata: ["device": "\(address)", "epoch": "\(payload.envelope.epoch)", "seq": "\(payload.envelope.seq)"])
            return
        }
        let size = pending.withLock { b -> Int in
            b.dirtyDevices.insert(address)
            if let (event, data) = effects.event {
                // Stored at most at its arrival time: a device's future time
                // would keep its events from retention and in every "since" window.
                var stamped = event
                stamped.envelope.ts = min(event.envelope.ts, now)
                b.events.append((address, stamped, data))
            }
            if let s = effects.session { b.sessions[s.sessionID] = SessionRecord.merged(b.sessions[s.sessionID], s) }
            if let s = effects.sessionOnly { b.sessions[s.sessionID] = SessionRecord.merged(b.sessions[s.sessionID], s) }
            if let u = effects.usage { b.usage[address] = u }
            if let d = effects.usageDay { b.usageDays["\(d.site)|\(d.day)"] = d }
            return b.count
        }
        if case .status(let s) = payload, s.body.state == .online {
            work.yield(.dispatch(address))
        }
        if size >= Self.batchSize { flushSignal.yield() }
        if effects.resync {
            logger.notice("event gap: asking the device to resync", metadata: ["device": "\(address)"])
            work.yield(.resync(address))
        }
    }

    /// Asks the devices owed a `resync` (a gap seen within
    /// `health.resync_interval_s` of the last one), and those whose missing
    /// events have not all arrived since the last one (a resync command lost
    /// with the broker), once they may be asked again — at most
    /// `FleetModel.maxResyncAttempts` times while holes stay open. Called
    /// every second by the health loop.
    func sendOwedResyncs(now: Date) {
        let (due, givenUp) = model.withLock { $0.takeOwedResyncs(now: now, interval: configuration.health.resyncIntervalSeconds) }
        for address in due {
            logger.notice("events still missing since the last resync: asking the device again", metadata: ["device": "\(address)"])
            work.yield(.resync(address))
        }
        for address in givenUp {
            logger.warning("events still missing after \(FleetModel.maxResyncAttempts) resyncs; the device no longer holds them", metadata: ["device": "\(address)"])
        }
    }

    // MARK: Committing

    /// A batch is committed every `batchInterval`, when it holds `batchSize`
    /// items, or as soon as messages stop coming for a `batchTick`. Under load
    /// a commit every `batchInterval`: every commit rewrites the event-key
    /// index pages its events land on (one or two per device), so fewer,
    /// larger commits write far less: with 1,000 devices reporting, going
    /// from 50 ms and 500 items to these cut the console's CPU per event by
    /// about a tenth (docs/BENCHMARKS.md). When the stream pauses, what came
    /// is committed within a tick instead of waiting.
    static let batchInterval = Duration.milliseconds(100)
    static let batchTick = Duration.milliseconds(10)
    static let batchSize = 5000

    /// Commits the pending batch (see `batchInterval`): one transaction per
    /// batch, never one per message.
    func flushLoop() async {
        await withDiscardingTaskGroup { group in
            group.addTask {
                var lastCount = 0
                var lastFlush = ContinuousClock.now
                while !Task.isCancelled {
                    try? await Task.sleep(for: Self.batchTick)
                    let count = self.pending.withLock { $0.count }
                    let now = ContinuousClock.now
                    // Nothing came since the last tick, or the interval is up (device rows ride on this one too).
                    if (count > 0 && count == lastCount) || now - lastFlush >= Self.batchInterval {
                        self.flushSignal.yield()
                        lastFlush = now
                        lastCount = 0
                    } else {
                        lastCount = count
                    }
                }
            }
            for await _ in flushWakeups { await flushNow() }
            group.cancelAll()
        }
    }

    /// How often device rows are written (see `flushNow`): every second for
    /// replicas, which share their view of the fleet through these rows.
    var deviceRowInterval: Duration { isReplica ? .seconds(1) : .seconds(5) }

    /// Commits what ingest gathered. Events, sessions and usage go in every
    /// batch; device rows (a cache of the in-memory model for the next start)
    /// every `deviceRowInterval`, and always at shutdown: with a thousand devices
    /// reporting, writing every touched row every 50 ms cost more than the
    /// events themselves. The event high-water marks they hold are re-read
    /// from the event table at start-up, so a crash loses nothing by it;
    /// the rest of a row is re-learned within seconds from retained and live
    /// messages.
    public func flushNow(includingDevices: Bool = false) async {
        // One commit at a time, in the order the batches were taken (`forget` too).
        await commitGate.run { await commitPending(includingDevices: includingDevices) }
    }

    private func commitPending(includingDevices: Bool) async {
        var batch = pending.withLock { b -> IngestBatch in defer { b = .init() }; return b }
        let devicesDue = includingDevices || deviceRowsDue.withLock { due in
            let now = ContinuousClock.now
            guard now >= due else { return false }
            due = now + deviceRowInterval
            return true
        }
        if !batch.dirtyDevices.isEmpty && !devicesDue {
            let dirty = batch.dirtyDevices
            batch.dirtyDevices = []
            pending.withLock { $0.dirtyDevices.formUnion(dirty) }
        }
        // Device records are encoded here, once per write, not once per message.
        if !batch.dirtyDevices.isEmpty {
            let records = model.withLock { m in batch.dirtyDevices.compactMap { a in m.devices[a].map { (a, $0) } } }
            let encoder = FleetJSON.makeEncoder()
            for (address, record) in records {
                if let json = try? encoder.encode(record) { batch.devices[address] = json }
            }
            batch.dirtyDevices = []
        }
        guard !batch.isEmpty else { return }
        batch.writer = configuration.instance
        do {
            let inserted = try await store.commit(batch)
            liveness.commitSucceeded()
            metrics.eventsStored.increment(by: Int64(inserted.count))
            metrics.eventsDuplicate.increment(by: Int64(batch.events.count - inserted.count))
            // Session metrics count stored events, so a duplicate or replay counts once.
            for e in inserted {
                if e.type == .sessionStarted { metrics.sessionsStarted.increment() }
                if e.type == .sessionAborted, let reason = e.reason { metrics.aborted(reason.rawValue) }
            }
        } catch {
            liveness.commitFailed()
            logger.error("could not commit ingested data; retrying with the next batch", metadata: ["error": "\(error)"])
            pending.withLock { $0.requeue(batch) }
        }
    }
}
