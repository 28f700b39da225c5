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
            if r.desired?.version != desired.version { r.desiredSince = Date() }
            r.desired = desired
            m.devices[address] = r
        }
        pending.withLock { _ = $0.dirtyDevices.insert(address) }
    }

    func apply(_ payload: AgentPayload, from address: DeviceAddress, raw: [UInt8], retained: Bool = false) {
        let now = Date()
        let lag = now.timeIntervalSince(payload.envelope.ts)
        // Lag from live telemetry and events (a will carries its connect time, so status is left out).
        switch payload {
        case .telemetry, .event:
            if !payload.envelope.historical, lag.isFinite { metrics.lag.set(max(0, lag)) }
        default:
            break
        }
        var resync = false
        let batchItems = model.withLock { m -> PendingItems in
            var items = PendingItems()
            guard m.quotas.admit(address, bytes: raw.count, quota: configuration.deviceQuota, now: now) else {
                var r = m.record(address)
                items.overQuota = r.quotaExceededAt.map { now.timeIntervalSince($0) > FleetModel.quotaAlertSeconds } ?? true ? .firstDrop : .drop
                r.quotaDrops = .saturatingSum(r.quotaDrops ?? 0, 1)
                r.quotaExceededAt = now
                m.devices[address] = r
                return items
            }
            var r = m.takeRecord(address) // put back below, on every path
            let envelope = payload.envelope
            /// Asks the device for a `resync` now, or once `health.resync_interval_s` has passed since the last.
            func askResync() {
                if (r.lastResyncRequest.map { now.timeIntervalSince($0) > configuration.health.resyncIntervalSeconds } ?? true) {
                    r.lastResyncRequest = now
                    m.resyncAttempts[address, default: 0] += 1
                    resync = true
                } else {
                    m.resyncOwed.insert(address) // asked too recently: asked again later, never dropped
                }
            }
            if r.revokedAt != nil {
                // Forgotten and revoked (issue 20, item 18). A retained message is
                // the broker's copy of what was published before: not trusted.
                if retained {
                    items.ignoredRevoked = true
                    m.devices[address] = r
                    return items
                }
                // A live one comes from a client holding the id's credentials
                // now: it was provisioned again. It starts fresh, and is asked to
                // republish its retained topics, so the broker's copies are its own.
                r = r.forgotten(at: r.forgottenAt ?? now, revoked: false)
                r.desiredSince = r.desired == nil ? nil : now
                items.readmitted = true
                askResync()
            }
            if !envelope.historical { r.lastSeen = max(r.lastSeen ?? .distantPast, now) }
            switch payload {
            case .status(let s):
                let body = s.body
                let wasOnline = r.online
                // A status from an older epoch (a late will) never overrides a newer one; within an
                // epoch a repeated or late one doesn't either, except the will (seq 0, offline).
                if let epoch = r.epoch, envelope.epoch < epoch { break }
                let isWill = envelope.seq == 0 && body.state == .offline
                if !isWill, let last = r.lastStatus, !Self.isNewer(envelope, than: last) { break }
                if !isWill { r.lastStatus = [envelope.epoch, envelope.seq] }
                // A device we have seen events from came back with a newer epoch: the last
                // events of its previous epoch may have been lost with no gap to show it
                // (a broker or console that died after the agent's PUBACK). Ask once per epoch.
                if body.state == .online, let known = r.epoch, envelope.epoch > known, r.lastEventEpoch != nil,
                   (r.epochResyncAsked ?? 0) < envelope.epoch, !isReplica {
                    r.epochResyncAsked = envelope.epoch
                    askResync()
                }
                r.epoch = envelope.epoch
                r.online = body.state == .online
                r.offlineReason = body.reason?.rawValue
                if wasOnline != r.online { r.onlineChangedAt = now }
                if let v = body.agentVersion { r.agentVersion = v }
                if let p = body.programs { r.programs = p }
                if body.state == .online, let lastEpoch = r.lastEventEpoch, envelope.epoch > lastEpoch {
                    r.session = nil // a new epoch: whatever ran before was interrupted
                }
            case .telemetry(let t):
                // seq ≤ 2^53 (decoding), so neither `+ 1` nor `Int(…)` can trap; the count saturates.
                if let last = r.lastTelemetrySeq, r.epoch == envelope.epoch, envelope.seq > last + 1 {
                    r.telemetryGaps = .saturatingSum(r.telemetryGaps, Int(envelope.seq - last - 1))
                }
                r.lastTelemetrySeq = envelope.seq
                r.telemetry = t.body
                r.telemetryAt = now
                if r.epoch == nil || envelope.epoch >= (r.epoch ?? 0) { r.online = true; r.epoch = envelope.epoch }
                if ![SessionPhase.running, .paused, .stopping].contains(t.body.sessionState) {  // idle, cooldown, fault, locked_out, …
                    r.session = nil
                } else if let id = t.body.sessionID {
                    if r.session?.sessionID != id { r.session = SessionNow(sessionID: id, program: t.body.program, startedAt: nil, state: t.body.sessionState.rawValue) }
                    else { r.session?.state = t.body.sessionState.rawValue }
                }
            case .event(let e):
                let last = r.lastEventEpoch.flatMap { epoch in r.lastEventSeq.map { (epoch: epoch, seq: $0) } }
                let check = SequenceCheck.classify(last: last, incoming: (envelope.epoch, envelope.seq))
                if let last, let jump = Self.implausibleJump(check) {
                    // A device fault, not a gap: refused (not stored, not applied), counted and alerted.
                    r.sequenceFaults = .saturatingSum(r.sequenceFaults ?? 0, 1)
                    r.sequenceFaultAt = now
                    r.sequenceFaultDetail = "event seq \(envelope.seq) of epoch \(envelope.epoch) after seq \(last.seq) of epoch \(last.epoch) skips \(jump)"
                    items.sequenceFault = true
                    break
                }
                switch check {
                case .next:
                    r.lastEventEpoch = envelope.epoch
                    r.lastEventSeq = envelope.seq
                case .newEpoch(missing: 0):
                    r.lastEventEpoch = envelope.epoch
                    r.lastEventSeq = envelope.seq
                    // The previous epoch's last events may be lost without a gap to show it (see status).
                    if (r.epochResyncAsked ?? 0) < envelope.epoch, !isReplica {
                        r.epochResyncAsked = envelope.epoch
                        askResync()
                    }
                case .gap, .newEpoch:
                    r.lastEventEpoch = envelope.epoch
                    r.lastEventSeq = envelope.seq
                    // A replica sees only its share of the events: there, gaps are found in the event table (scanForGaps).
                    if isReplica { break }
                    if case .gap = check, let last { m.addHoles(address, epoch: envelope.epoch, (last.seq + 1)..<envelope.seq) }
                    if case .newEpoch = check {
                        m.addHoles(address, epoch: envelope.epoch, 1..<envelope.seq)
                        r.epochResyncAsked = max(r.epochResyncAsked ?? 0, envelope.epoch)
                    }
                    askResync()
                case .notNewer, .olderEpoch:
                    m.fillHole(address, epoch: envelope.epoch, seq: envelope.seq) // stored by key below: a duplicate is a no-op
                }
                items.event = (e, Data(raw))
                switch check {
                case .next, .gap, .newEpoch: items.isNewEvent = true
                default: break
                }
                if case .next = check { applySession(e.body, envelope: envelope, to: &r, items: &items) }
                else if case .gap = check { applySession(e.body, envelope: envelope, to: &r, items: &items) }
                else if case .newEpoch = check { applySession(e.body, envelope: envelope, to: &r, items: &items) }
                else { items.sessionOnly = sessionRecord(e.body, envelope: envelope, address: address) }
            case .usage(let u):
                // Counters are cumulative: an older message (a late replay) is ignored, never
                // mistaken for a reset. A newer epoch with lower counters is a reset.
                if let last = r.lastUsage, !Self.isNewer(envelope, than: last) { break }
                r.lastUsage = [envelope.epoch, envelope.seq]
                r.usage = u.body
                let previous = m.usage[address]
                let delta: Usage
                if let previous {
                    delta = u.body.delta(since: previous.last) ?? u.body // a reset: count everything anew
                } else {
                    delta = u.body
                }
                // `outbox_drops` follows the counter's growth, not its value (which only grows).
                if delta.outboxDropped > 0 { r.outboxDropsGrewAt = now }
                let total = (previous?.total ?? Usage()).adding(delta)
                m.usage[address] = (u.body, total)
                items.usage = (u.body, total)
                if !delta.isZero {
                    let day = Self.day(of: envelope.ts, in: configuration.timeZone(ofSite: address.site.rawValue))
                    let key = "\(address.site.rawValue)|\(day)"
                    var bucket = m.usageDays[key] ?? UsageDay(site: address.site.rawValue, day: day, sessions: SessionCounts(), minutes: [:])
                    bucket.add(delta)
                    m.usageDays[key] = bucket
                    items.usageDay = bucket
                }
            case .reportedConfig(let c):
                if let last = r.lastReported, !Self.isNewer(envelope, than: last) { break }
                r.lastReported = [envelope.epoch, envelope.seq]
                r.reported = c.body
            }
            m.devices[address] = r
            return items
        }
        if let drop = batchItems.overQuota {
            metrics.quotaDropped.increment()
            pending.withLock { _ = $0.dirtyDevices.insert(address) } // the count is kept in the device's row
            if drop == .firstDrop {
                logger.warning("a device sends more than its ingest quota: its messages are dropped until it slows down", metadata: [
                    "device": "\(address)", "messages_per_s": "\(configuration.deviceQuota.messagesPerSecond)", "bytes_per_s": "\(configuration.deviceQuota.bytesPerSecond)",
                ])
            }
            return
        }
        if batchItems.ignoredRevoked {
            metrics.revokedIgnored.increment()
            return
        }
        if batchItems.readmitted {
            logger.notice("a forgotten device is heard from live: provisioned again, it starts fresh", metadata: ["device": "\(address)"])
        }
        if batchItems.sequenceFault {
            pending.withLock { _ = $0.dirtyDevices.insert(address) } // the fault is kept in the device's row
            metrics.sequenceFaults.increment()
            logger.warning("refused an event with an implausible seq: a device fault", metadata: ["device": "\(address)", "epoch": "\(payload.envelope.epoch)", "seq": "\(payload.envelope.seq)"])
            return
        }
        let size = pending.withLock { b -> Int in
            b.dirtyDevices.insert(address)
            if let (event, data) = batchItems.event, case .event(var stamped) = payload {
                _ = event
                // Stored at most at its arrival time: a device's future time
                // would keep its events from retention and in every "since" window.
                stamped.envelope.ts = min(stamped.envelope.ts, now)
                b.events.append((address, stamped, data))
            }
            if let s = batchItems.session { b.sessions[s.sessionID] = merge(b.sessions[s.sessionID], s) }
            if let s = batchItems.sessionOnly { b.sessions[s.sessionID] = merge(b.sessions[s.sessionID], s) }
            if let u = batchItems.usage { b.usage[address] = u }
            if let d = batchItems.usageDay { b.usageDays["\(d.site)|\(d.day)"] = d }
            return b.count
        }
        if case .status(let s) = payload, s.body.state == .online {
            work.yield(.dispatch(address))
        }
        if size >= Self.batchSize { flushSignal.yield() }
        if resync {
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
        let (due, givenUp) = model.withLock { m -> ([DeviceAddress], [DeviceAddress]) in
            let interval = configuration.health.resyncIntervalSeconds
            // Owed (a gap while the last was too recent), or holes still open after the last one.
            var wanted = m.resyncOwed
            var givenUp: [DeviceAddress] = []
            for (a, holes) in m.holes where !holes.isEmpty {
                if m.resyncAttempts[a, default: 0] < FleetModel.maxResyncAttempts { wanted.insert(a) }
                else if m.resyncAttempts[a] == FleetModel.maxResyncAttempts {
                    m.resyncAttempts[a] = FleetModel.maxResyncAttempts + 1 // said once
                    givenUp.append(a)
                }
            }
            let due = wanted.filter { a in m.devices[a]?.lastResyncRequest.map { now.timeIntervalSince($0) > interval } ?? true }
            for a in due {
                m.resyncOwed.remove(a)
                m.devices[a]?.lastResyncRequest = now
                m.resyncAttempts[a, default: 0] += 1
            }
            return (Array(due), givenUp)
        }
        for address in due {
            logger.notice("events still missing since the last resync: asking the device again", metadata: ["device": "\(address)"])
            work.yield(.resync(address))
        }
        for address in givenUp {
            logger.warning("events still missing after \(FleetModel.maxResyncAttempts) resyncs; the device no longer holds them", metadata: ["device": "\(address)"])
        }
    }

    /// The number of events `check` says were skipped, when that is more
    /// than `FleetModel.maxEventGap`; nil for a believable arrival.
    static func implausibleJump(_ check: SequenceCheck) -> UInt64? {
        switch check {
        case .gap(let missing), .newEpoch(let missing): missing > FleetModel.maxEventGap ? missing : nil
        default: nil
        }
    }

    static func isNewer(_ e: Envelope, than last: [UInt64]) -> Bool {
        guard last.count == 2 else { return true }
        return e.epoch > last[0] || (e.epoch == last[0] && e.seq > last[1])
    }

    enum QuotaDrop { case firstDrop, drop }

    struct PendingItems {
        /// Dropped over the device's quota (the first of an episode is logged).
        var overQuota: QuotaDrop?
        /// The event was the next of its device (not a duplicate or a late replay).
        var isNewEvent = false
        /// The event was refused for an implausible jump of its seq.
        var sequenceFault = false
        /// A retained message of a revoked device, ignored.
        var ignoredRevoked = false
        /// A live message ended the device's revocation.
        var readmitted = false
        var event: (Stamped<Event>, Data)?
        var session: SessionRecord?
        var sessionOnly: SessionRecord?
        var usage: (last: Usage, total: Usage)?
        var usageDay: UsageDay?
    }

    private func applySession(_ e: Event, envelope: Envelope, to r: inout DeviceRecord, items: inout PendingItems) {
        guard let address = try? DeviceAddress(site: r.site, device: r.device) else { return }
        items.session = sessionRecord(e, envelope: envelope, address: address)
        guard let id = e.sessionID else { return }
        switch e.type {
        case .sessionStarted:
            r.session = SessionNow(sessionID: id, program: e.program, startedAt: envelope.ts, state: "running")
        case .sessionPaused:
            if r.session?.sessionID == id { r.session?.state = "paused" }
        case .sessionResumed:
            if r.session?.sessionID == id { r.session?.state = "running" }
        case .sessionCompleted, .sessionAborted:
            if r.session?.sessionID == id || r.session == nil { r.session = nil }
        default:
            break
        }
    }

    private func sessionRecord(_ e: Event, envelope: Envelope, address: DeviceAddress) -> SessionRecord? {
        guard let id = e.sessionID else { return nil }
        let site = address.site.rawValue, device = address.device.rawValue
        switch e.type {
        case .sessionStarted, .sessionStep, .sessionPaused, .sessionResumed:
            return SessionRecord(sessionID: id, site: site, device: device, program: e.program, startedAt: e.type == .sessionStarted ? envelope.ts : nil, endedAt: nil, outcome: "running", reason: nil)
        case .sessionCompleted:
            return SessionRecord(sessionID: id, site: site, device: device, program: e.program, startedAt: nil, endedAt: envelope.ts, outcome: "completed", reason: nil)
        case .sessionAborted:
            return SessionRecord(sessionID: id, site: site, device: device, program: e.program, startedAt: nil, endedAt: envelope.ts, outcome: "aborted", reason: e.reason?.rawValue)
        case .sessionMissed:
            return SessionRecord(sessionID: id, site: site, device: device, program: e.program, startedAt: nil, endedAt: envelope.ts, outcome: "missed", reason: e.error?.code.rawValue)
        default:
            return nil
        }
    }

    private func merge(_ a: SessionRecord?, _ b: SessionRecord) -> SessionRecord {
        guard var a else { return b }
        a.program = b.program ?? a.program
        a.startedAt = a.startedAt ?? b.startedAt
        a.endedAt = b.endedAt ?? a.endedAt
        if !["completed", "aborted", "missed"].contains(a.outcome) { a.outcome = b.outcome }
        a.reason = b.reason ?? a.reason
        return a
    }

    static func day(of date: Date, in zone: TimeZone) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let c = calendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d-%02d-%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0)
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
