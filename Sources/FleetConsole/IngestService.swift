import FleetProtocol
import Foundation
import Mosquitto
import ServiceLifecycle

/// Ingest: every message under the root, applied to the fleet model and the
/// pending batch. Never throws, never waits on the network or the database
/// (writes go to the pending batch, committed by `BatchWriter`); what it
/// asks of others — a reply to correlate, queued commands to send, a
/// resync — it hands to the command service, which does it on its own task.
///
/// Two stages on two tasks: this one parses topics and decodes payloads
/// (pure, and most of ingest's CPU), the other applies them in the same
/// order. With one task for both, ingest was one thread's work at ~20 µs
/// per event; split, it keeps up with a stream that one thread could not.
public final class IngestService: Service, Sendable {
    let context: ConsoleContext
    let state: FleetState
    let client: MQTTClient
    let topics: ConsoleTopics
    let commands: CommandService
    /// Told when a device in a rollout moves (a reported config, telemetry).
    let rollouts: RolloutService
    let liveness: Liveness
    /// What ingest applies messages by: fixed by the configuration, made
    /// once rather than for every message.
    let rules: IngestRules
    /// Recent session telemetry per device, bounded, for the dashboard's
    /// live session picture (TelemetryHistory; fed by `apply`).
    let telemetryHistory = TelemetryHistory()

    init(context: ConsoleContext, state: FleetState, client: MQTTClient, topics: ConsoleTopics, commands: CommandService, rollouts: RolloutService,
         liveness: Liveness) {
        self.context = context
        self.state = state
        self.client = client
        self.topics = topics
        self.commands = commands
        self.rollouts = rollouts
        self.liveness = liveness
        let configuration = context.configuration
        rules = IngestRules(resyncIntervalSeconds: configuration.health.resyncIntervalSeconds, quota: configuration.deviceQuota,
                            isReplica: context.isReplica, timeZone: configuration.timeZone(ofSite:))
    }

    /// Decoded messages waiting for the applying stage, at most.
    static let handoffCapacity = 10_000

    /// Until the broker's stream ends or the console shuts down.
    ///
    /// The whole loop is cancelled at a graceful shutdown, not each message
    /// checked for one: `cancelOnGracefulShutdown()` on the stream merges it
    /// with the shutdown signal (swift-async-algorithms' `merge`), which cost
    /// ingest about a fifth more CPU per event (docs/BENCHMARKS.md).
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            let handoff = IngestHandoff(capacity: Self.handoffCapacity)
            await withDiscardingTaskGroup { group in
                group.addTask {
                    await handoff.drain { item in self.liveness.applying { self.handle(item) } }
                }
                for await message in self.client.messages {
                    await handoff.append(self.classify(message))
                }
                handoff.finish()
            }
        }
    }

    /// Handles one message from the broker: classifies its topic, decodes it
    /// and applies it. Anything malformed is counted and dropped; this never
    /// throws and never waits on the network or the database. Public so that
    /// fuzzing can drive ingest with any topic and payload without a broker.
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
        context.metrics.ingested.increment()
        if topics.isReplyTopic(message.topic) { return .reply(message) }
        guard let topic = context.configuration.topicRoot.parse(message.topic) else {
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
        case .reply(let message): commands.handleReply(message)
        case .desired(let address, let desired):
            state.setDesired(desired, for: address, at: context.clock.now(), onlyIfNewVersion: true)
            state.markDirty(address)
        case .payload(let payload, let address, let raw, let retained): apply(payload, from: address, raw: raw, retained: retained)
        case .rejected(let message, let why): reject(message, why)
        case .ignored: break
        }
    }

    private func reject(_ message: MQTTMessage, _ why: String) {
        context.metrics.malformed.increment()
        context.logger.debug("ignored a malformed message", metadata: ["topic": "\(message.topic.prefix(200))", "bytes": "\(message.payload.count)", "why": "\(why.prefix(200))"])
    }

    /// Applies a decoded message (`FleetModel.apply`, the pure part) and
    /// performs what it asks: metrics, logs, the pending batch, a resync.
    func apply(_ payload: AgentPayload, from address: DeviceAddress, raw: [UInt8], retained: Bool = false) {
        let (metrics, logger) = (context.metrics, context.logger)
        let now = context.clock.now()
        let lag = now.timeIntervalSince(payload.envelope.ts)
        // Lag from live telemetry and events (a will carries its connect time, so status is left out).
        switch payload {
        case .telemetry, .event:
            if !payload.envelope.historical, lag.isFinite { metrics.lag.set(max(0, lag)) }
        default:
            break
        }
        let effects = state.model.withLock { $0.apply(payload, from: address, raw: raw, retained: retained, now: now, rules: rules) }
        if let drop = effects.overQuota {
            metrics.quotaDropped.increment()
            state.markDirty(address) // the count is kept in the device's row
            if drop == .firstDrop {
                logger.warning("a device sends more than its ingest quota: its messages are dropped until it slows down", metadata: [
                    "device": "\(address)", "messages_per_s": "\(rules.quota.messagesPerSecond)", "bytes_per_s": "\(rules.quota.bytesPerSecond)",
                ])
            }
            return
        }
        if effects.ignoredRevoked {
            metrics.revokedIgnored.increment()
            return
        }
        if case .telemetry(let t) = payload { telemetryHistory.record(address, t.body, at: now) } // the dashboard's session picture
        if effects.readmitted {
            logger.notice("a forgotten device is heard from live: provisioned again, it starts fresh", metadata: ["device": "\(address)"])
        }
        if effects.sequenceFault {
            state.markDirty(address) // the fault is kept in the device's row
            metrics.sequenceFaults.increment()
            logger.warning("refused an event with an implausible seq: a device fault", metadata: ["device": "\(address)", "epoch": "\(payload.envelope.epoch)", "seq": "\(payload.envelope.seq)"])
            return
        }
        let size = state.pending.withLock { b -> Int in
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
        switch payload {
        case .status(let s) where s.body.state == .online: commands.deviceOnline(address)
        case .reportedConfig, .telemetry: rollouts.deviceMoved(now: now)
        default: break
        }
        if size >= BatchWriter.batchSize { state.requestFlush() }
        if effects.resync {
            logger.notice("event gap: asking the device to resync", metadata: ["device": "\(address)"])
            commands.requestResync(address)
        }
    }
}
