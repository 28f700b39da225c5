import FleetProtocol
import Foundation

/// What ingest applies a message by: the configuration and the console's role.
struct IngestRules: Sendable {
    /// `health.resync_interval_s`.
    var resyncIntervalSeconds: Double
    /// `ingest.*`.
    var quota: DeviceQuota
    /// A replica sees only its share of the events (gaps are found in the
    /// event table instead) and never asks for a resync at a new epoch.
    var isReplica: Bool
    /// The time zone of a site (daily usage is counted in the site's days).
    var timeZone: @Sendable (String) -> TimeZone
}

/// What applying one message asks of the console, as data: the writes for
/// the pending batch, whether to ask the device for a `resync`, and what to
/// count and log. The fleet model's changes are already made.
struct IngestEffects {
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
    /// Ask the device for a `resync` now.
    var resync = false
}

/// Whether a message over a quota is the first of its episode (logged) or not.
enum QuotaDrop { case firstDrop, drop }

extension FleetModel {
    /// Applies one decoded agent message from `address` at `now` to the
    /// model — the device's record, usage, holes, resync bookkeeping and
    /// quota — and returns what the console must do about it. Pure: no
    /// clock, no I/O, no locks; `IngestService.apply` calls it under the
    /// model's lock and performs the effects.
    mutating func apply(_ payload: AgentPayload, from address: DeviceAddress, raw: [UInt8], retained: Bool, now: Date, rules: IngestRules) -> IngestEffects {
        var items = IngestEffects()
        guard quotas.admit(address, bytes: raw.count, quota: rules.quota, now: now) else {
            var r = record(address)
            items.overQuota = r.quotaExceededAt.map { now.timeIntervalSince($0) > FleetModel.quotaAlertSeconds } ?? true ? .firstDrop : .drop
            r.quotaDrops = .saturatingSum(r.quotaDrops ?? 0, 1)
            r.quotaExceededAt = now
            devices[address] = r
            return items
        }
        var r = takeRecord(address) // put back below, on every path
        let envelope = payload.envelope
        /// Asks the device for a `resync` now, or once `health.resync_interval_s` has passed since the last.
        func askResync() {
            if (r.lastResyncRequest.map { now.timeIntervalSince($0) > rules.resyncIntervalSeconds } ?? true) {
                r.lastResyncRequest = now
                resyncAttempts[address, default: 0] += 1
                items.resync = true
            } else {
                resyncOwed.insert(address) // asked too recently: asked again later, never dropped
            }
        }
        if r.revokedAt != nil {
            // Forgotten and revoked (issue 20, item 18). A retained message is
            // the broker's copy of what was published before: not trusted.
            if retained {
                items.ignoredRevoked = true
                devices[address] = r
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
               (r.epochResyncAsked ?? 0) < envelope.epoch, !rules.isReplica {
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
                if (r.epochResyncAsked ?? 0) < envelope.epoch, !rules.isReplica {
                    r.epochResyncAsked = envelope.epoch
                    askResync()
                }
            case .gap, .newEpoch:
                r.lastEventEpoch = envelope.epoch
                r.lastEventSeq = envelope.seq
                // A replica sees only its share of the events: there, gaps are found in the event table (scanForGaps).
                if rules.isReplica { break }
                if case .gap = check, let last { addHoles(address, epoch: envelope.epoch, (last.seq + 1)..<envelope.seq) }
                if case .newEpoch = check {
                    addHoles(address, epoch: envelope.epoch, 1..<envelope.seq)
                    r.epochResyncAsked = max(r.epochResyncAsked ?? 0, envelope.epoch)
                }
                askResync()
            case .notNewer, .olderEpoch:
                fillHole(address, epoch: envelope.epoch, seq: envelope.seq) // stored by key below: a duplicate is a no-op
            }
            items.event = (e, Data(raw))
            switch check {
            case .next, .gap, .newEpoch: items.isNewEvent = true
            default: break
            }
            if case .next = check { Self.applySession(e.body, envelope: envelope, to: &r, items: &items) }
            else if case .gap = check { Self.applySession(e.body, envelope: envelope, to: &r, items: &items) }
            else if case .newEpoch = check { Self.applySession(e.body, envelope: envelope, to: &r, items: &items) }
            else { items.sessionOnly = Self.sessionRecord(e.body, envelope: envelope, address: address) }
        case .usage(let u):
            // Counters are cumulative: an older message (a late replay) is ignored, never
            // mistaken for a reset. A newer epoch with lower counters is a reset.
            if let last = r.lastUsage, !Self.isNewer(envelope, than: last) { break }
            r.lastUsage = [envelope.epoch, envelope.seq]
            r.usage = u.body
            let previous = usage[address]
            let delta: Usage
            if let previous {
                delta = u.body.delta(since: previous.last) ?? u.body // a reset: count everything anew
            } else {
                delta = u.body
            }
            // `outbox_drops` follows the counter's growth, not its value (which only grows).
            if delta.outboxDropped > 0 { r.outboxDropsGrewAt = now }
            let total = (previous?.total ?? Usage()).adding(delta)
            usage[address] = (u.body, total)
            items.usage = (u.body, total)
            if !delta.isZero {
                let day = Self.day(of: envelope.ts, in: rules.timeZone( address.site.rawValue))
                let key = "\(address.site.rawValue)|\(day)"
                var bucket = usageDays[key] ?? UsageDay(site: address.site.rawValue, day: day, sessions: SessionCounts(), minutes: [:])
                bucket.add(delta)
                usageDays[key] = bucket
                items.usageDay = bucket
            }
        case .reportedConfig(let c):
            if let last = r.lastReported, !Self.isNewer(envelope, than: last) { break }
            r.lastReported = [envelope.epoch, envelope.seq]
            r.reported = c.body
            r.reportedAt = now
        }
        devices[address] = r
        return items
    }

    /// The devices to ask for a `resync` at `now`, marked as asked: those
    /// owed one (a gap seen too soon after the last), and those whose
    /// missing events have not all arrived since the last (a resync command
    /// lost with the broker) — once `interval` has passed since the last,
    /// and at most `maxResyncAttempts` times while holes stay open. Also
    /// the devices that just reached that bound (said once, for the log).
    mutating func takeOwedResyncs(now: Date, interval: Double) -> (due: [DeviceAddress], givenUp: [DeviceAddress]) {
        // Owed (a gap while the last was too recent), or holes still open after the last one.
        var wanted = resyncOwed
        var givenUp: [DeviceAddress] = []
        for (a, open) in holes where !open.isEmpty {
            if resyncAttempts[a, default: 0] < FleetModel.maxResyncAttempts { wanted.insert(a) }
            else if resyncAttempts[a] == FleetModel.maxResyncAttempts {
                resyncAttempts[a] = FleetModel.maxResyncAttempts + 1 // said once
                givenUp.append(a)
            }
        }
        let due = wanted.filter { a in devices[a]?.lastResyncRequest.map { now.timeIntervalSince($0) > interval } ?? true }
        for a in due {
            resyncOwed.remove(a)
            devices[a]?.lastResyncRequest = now
            resyncAttempts[a, default: 0] += 1
        }
        return (Array(due), givenUp)
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

    private static func applySession(_ e: Event, envelope: Envelope, to r: inout DeviceRecord, items: inout IngestEffects) {
        guard let address = try? DeviceAddress(site: r.site, device: r.device) else { return }
        items.session = Self.sessionRecord(e, envelope: envelope, address: address)
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

    private static func sessionRecord(_ e: Event, envelope: Envelope, address: DeviceAddress) -> SessionRecord? {
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

    static func day(of date: Date, in zone: TimeZone) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let c = calendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d-%02d-%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0)
    }
}

extension SessionRecord {
    /// `b` folded into `a`: a finished outcome is never undone by a later running one.
    static func merged(_ a: SessionRecord?, _ b: SessionRecord) -> SessionRecord {
        guard var a else { return b }
        a.program = b.program ?? a.program
        a.startedAt = a.startedAt ?? b.startedAt
        a.endedAt = b.endedAt ?? a.endedAt
        if !["completed", "aborted", "missed"].contains(a.outcome) { a.outcome = b.outcome }
        a.reason = b.reason ?? a.reason
        return a
    }
}
