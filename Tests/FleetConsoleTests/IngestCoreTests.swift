@testable import FleetConsole
import FleetProtocol
import Foundation
import Testing

/// The console's ingest core (`FleetModel.apply`), pure: a message and a
/// time in, the model changed and the effects out. No broker, no database,
/// no clock but the `now` each call is given (issue 22, item 1).
@Suite("Ingest core: applying messages to the fleet model")
struct IngestCoreTests {
    static let a = try! DeviceAddress(site: "clinic-north", device: "m-1")
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    static let rules = IngestRules(resyncIntervalSeconds: 30, quota: DeviceQuota(), isReplica: false,
                                   timeZone: { $0 == "clinic-north" ? TimeZone(identifier: "Asia/Tokyo")! : TimeZone(identifier: "UTC")! })

    static func at(_ seconds: Double) -> Date { t0.addingTimeInterval(seconds) }

    static func event(_ type: EventType = .faultCleared, session: String? = nil, epoch: UInt64 = 3, seq: UInt64, at seconds: Double = 0) -> AgentPayload {
        .event(Stamped(Event(type: type, sessionID: session, program: "calf_relief"), envelope: Envelope(ts: at(seconds), epoch: epoch, seq: seq)))
    }

    static func status(_ state: PresenceState, epoch: UInt64 = 3, seq: UInt64, at seconds: Double = 0) -> AgentPayload {
        .status(Stamped(Status(state: state, agentVersion: "1.0", programs: ["calf_relief"], configVersion: 0, capabilities: []),
                        envelope: Envelope(ts: at(seconds), epoch: epoch, seq: seq)))
    }

    static func usage(_ started: UInt64, dropped: UInt64 = 0, epoch: UInt64 = 3, seq: UInt64, at seconds: Double = 0) -> AgentPayload {
        .usage(Stamped(Usage(sessions: SessionCounts(started: started), outboxDropped: dropped), envelope: Envelope(ts: at(seconds), epoch: epoch, seq: seq)))
    }

    @discardableResult
    static func apply(_ m: inout FleetModel, _ p: AgentPayload, at seconds: Double = 0, retained: Bool = false, rules: IngestRules = rules) -> IngestEffects {
        m.apply(p, from: a, raw: [UInt8](repeating: 0, count: 100), retained: retained, now: at(seconds), rules: rules)
    }

    @Test("a gap records the missing seqs and asks for a resync; another gap within resync_interval_s is owed, not asked; the late events fill the holes")
    func gapsAndResync() {
        var m = FleetModel()
        Self.apply(&m, Self.event(seq: 1))
        let gap = Self.apply(&m, Self.event(seq: 4), at: 1)
        #expect(gap.resync && gap.isNewEvent)
        #expect(m.holes[Self.a] == [EventKey(epoch: 3, seq: 2), EventKey(epoch: 3, seq: 3)])
        let second = Self.apply(&m, Self.event(seq: 6), at: 10)
        #expect(!second.resync && m.resyncOwed.contains(Self.a), "asked 9 s ago: owed until the interval has passed")
        let late = Self.apply(&m, Self.event(seq: 2), at: 11)
        #expect(!late.isNewEvent && late.event != nil, "a late event is stored (by key), not new")
        #expect(m.holes[Self.a]?.contains(EventKey(epoch: 3, seq: 2)) == false)
        let third = Self.apply(&m, Self.event(seq: 9), at: 45)
        #expect(third.resync, "past the interval: asked again")
        #expect(m.resyncAttempts[Self.a] == 2)
    }

    @Test("a jump past a million events is a device fault: refused, counted on the record, no hole, no resync")
    func implausibleJump() {
        var m = FleetModel()
        Self.apply(&m, Self.event(seq: 1))
        let fault = Self.apply(&m, Self.event(seq: 1 + FleetModel.maxEventGap + 2), at: 1)
        #expect(fault.sequenceFault && !fault.resync && fault.event == nil)
        #expect(m.devices[Self.a]?.sequenceFaults == 1 && m.devices[Self.a]?.lastEventSeq == 1 && m.holes[Self.a] == nil)
        #expect(Self.apply(&m, Self.event(seq: 2), at: 2).isNewEvent, "the real next event is still the next")
    }

    @Test("status: online then a late will of an older epoch changes nothing; a newer epoch's birth asks once for a resync of the last epoch's events")
    func statusAndEpochs() {
        var m = FleetModel()
        Self.apply(&m, Self.status(.online, seq: 1))
        Self.apply(&m, Self.event(seq: 1), at: 1)
        #expect(m.devices[Self.a]?.online == true && m.devices[Self.a]?.onlineChangedAt == Self.t0)
        Self.apply(&m, Self.status(.offline, epoch: 2, seq: 0), at: 2)
        #expect(m.devices[Self.a]?.online == true, "a will of an older epoch")
        let reborn = Self.apply(&m, Self.status(.online, epoch: 4, seq: 1), at: 60)
        #expect(reborn.resync && m.devices[Self.a]?.epochResyncAsked == 4)
        let again = Self.apply(&m, Self.status(.online, epoch: 4, seq: 2), at: 120)
        #expect(!again.resync, "once per epoch")
        var replica = FleetModel()
        let rules = IngestRules(resyncIntervalSeconds: 30, quota: DeviceQuota(), isReplica: true, timeZone: Self.rules.timeZone)
        Self.apply(&replica, Self.status(.online, seq: 1), rules: rules)
        Self.apply(&replica, Self.event(seq: 1), at: 1, rules: rules)
        #expect(!Self.apply(&replica, Self.status(.online, epoch: 4, seq: 1), at: 60, rules: rules).resync, "a replica never asks")
    }

    @Test("usage: deltas add up, a reset counts anew, a late replay is ignored; outbox drops are noted when they grow; the day is the site's")
    func usageCounters() {
        var m = FleetModel()
        // 2026-01-15T00:30 in Tokyo is still the 14th in UTC.
        let lateEvening = Date(timeIntervalSince1970: 1_768_404_600).timeIntervalSince(Self.t0)
        Self.apply(&m, Self.usage(2, seq: 1, at: lateEvening))
        Self.apply(&m, Self.usage(5, dropped: 1, seq: 2, at: lateEvening))
        #expect(m.usage[Self.a]?.total.sessions.started == 5 && m.devices[Self.a]?.outboxDropsGrewAt == Self.t0)
        let replay = Self.apply(&m, Self.usage(3, seq: 1), at: 5)
        #expect(replay.usage == nil && m.usage[Self.a]?.total.sessions.started == 5, "an older message is not a reset")
        Self.apply(&m, Self.usage(1, dropped: 1, epoch: 4, seq: 1, at: lateEvening), at: 6)
        #expect(m.usage[Self.a]?.total.sessions.started == 6, "a new epoch with lower counters: a reset, counted anew")
        #expect(m.devices[Self.a]?.outboxDropsGrewAt == Self.at(6))
        #expect(m.usageDays.keys.sorted() == ["clinic-north|2026-01-15"])
    }

    @Test("a revoked device: its retained messages are ignored; a live one readmits it, starting fresh and asking for a resync")
    func revoked() {
        var m = FleetModel()
        Self.apply(&m, Self.event(seq: 7))
        m.forget(Self.a, tombstone: m.record(Self.a).forgotten(at: Self.at(1), revoked: true))
        let retained = Self.apply(&m, Self.status(.online, seq: 1), at: 2, retained: true)
        #expect(retained.ignoredRevoked && m.devices[Self.a]?.state == .revoked)
        let live = Self.apply(&m, Self.status(.online, epoch: 1, seq: 1), at: 3)
        #expect(live.readmitted && live.resync && m.devices[Self.a]?.state == .idle && m.devices[Self.a]?.lastEventSeq == nil)
    }

    @Test("over the quota: dropped before anything else, the first drop of an episode marked for the log")
    func quota() {
        var m = FleetModel()
        var q = DeviceQuota()
        q.burstMessages = 2
        q.messagesPerSecond = 1
        let rules = IngestRules(resyncIntervalSeconds: 30, quota: q, isReplica: false, timeZone: Self.rules.timeZone)
        let drops = (1...4).map { Self.apply(&m, Self.event(seq: UInt64($0)), rules: rules).overQuota }
        #expect(drops == [nil, nil, .firstDrop, .drop])
        #expect(m.devices[Self.a]?.quotaDrops == 2 && m.devices[Self.a]?.lastEventSeq == 2)
        #expect(Self.apply(&m, Self.event(seq: 5), at: 1, rules: rules).overQuota == nil, "a second later, one more fits")
        #expect(Self.apply(&m, Self.event(seq: 6), at: 1 + FleetModel.quotaAlertSeconds + 2, rules: rules).overQuota == nil)
        Self.apply(&m, Self.event(seq: 7), at: 1 + FleetModel.quotaAlertSeconds + 2, rules: rules)
        #expect(Self.apply(&m, Self.event(seq: 8), at: 1 + FleetModel.quotaAlertSeconds + 2, rules: rules).overQuota == .firstDrop,
                "a new episode after the alert window")
    }

    @Test("owed resyncs: asked once the interval has passed, again while holes stay open, at most three times in all; nothing once the holes are filled")
    func owedResyncs() {
        var m = FleetModel()
        Self.apply(&m, Self.event(seq: 1))
        #expect(Self.apply(&m, Self.event(seq: 4), at: 1).resync) // attempt 1 (2 and 3 missing)
        // Every second, as the health loop does: attempts 2 and 3 once 30 s have passed each time, then nothing.
        var asked: [Double] = [], givenUp: [Double] = []
        for second in stride(from: 2.0, through: 200, by: 1) {
            let (due, gaveUp) = m.takeOwedResyncs(now: Self.at(second), interval: 30)
            if !due.isEmpty { asked.append(second) }
            if !gaveUp.isEmpty { givenUp.append(second) }
        }
        #expect(asked == [32, 63], "after the interval each time, three in all with the first")
        #expect(givenUp == [64], "the bound is said once")

        // Filled holes: nothing more is owed, however long.
        var filled = FleetModel()
        Self.apply(&filled, Self.event(seq: 1))
        Self.apply(&filled, Self.event(seq: 3), at: 1)
        Self.apply(&filled, Self.event(seq: 2), at: 2)
        let later = (2...200).flatMap { filled.takeOwedResyncs(now: Self.at(Double($0)), interval: 30).due }
        #expect(later.isEmpty, "\(later)")

        // A gap too soon after the last resync is owed and asked once the interval has passed.
        var owed = FleetModel()
        Self.apply(&owed, Self.event(seq: 1))
        Self.apply(&owed, Self.event(seq: 3), at: 1)
        Self.apply(&owed, Self.event(seq: 2), at: 2)
        #expect(!Self.apply(&owed, Self.event(seq: 5), at: 3).resync)
        #expect(owed.takeOwedResyncs(now: Self.at(31), interval: 30).due.isEmpty)
        #expect(owed.takeOwedResyncs(now: Self.at(31.5), interval: 30).due == [Self.a])
    }
}
