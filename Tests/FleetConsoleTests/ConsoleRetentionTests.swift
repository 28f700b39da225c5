@testable import FleetConsole
import FleetProtocol
import FleetTestSupport
import Foundation
import Testing

/// Issue 20, item 5: retention on both stores. Old events, sessions and
/// cleared alerts go in chunks; what retention deleted is not mistaken for
/// events lost on the way (the gap scan starts above it), and where a
/// device's numbering stands survives even when all its events are gone.
@Suite("Console store: retention and the database's size", .tags(.postgres))
struct ConsoleRetentionTests {
    typealias S = ConsoleStoreTests
    static let other = try! DeviceAddress(site: "clinic-north", device: "m-2")

    @Test("old events go in chunks, each (device, epoch) keeping a floor: the gap scan asks only for gaps above it, and the last position survives", arguments: [TestDatabase.sqlite, .postgres])
    func events(_ backend: TestDatabase) async throws {
        try await S.withStore(backend) { store, _ in
            var batch = IngestBatch()
            // m-1, epoch 7: seqs 1–6 a day old, 8–9 recent (7 missing: a real gap), and 10 recent.
            batch.events = (1...6).map { S.event(.faultCleared, session: nil, seq: $0, at: 0) }
                + [8, 9, 10].map { S.event(.faultCleared, session: nil, seq: $0, at: 86_400) }
            // m-2: everything old.
            batch.events += (UInt64(1)...3).map { seq in
                var e = S.event(.faultCleared, session: nil, epoch: 4, seq: seq, at: 0)
                e.0 = Self.other
                return e
            }
            try await store.commit(batch)
            let now = S.t0.addingTimeInterval(86_400 + 60)
            let counts = try await store.prune(RetentionCutoffs(events: S.t0.addingTimeInterval(3600)), chunk: 2)
            #expect(counts == PruneCounts(events: 9))
            #expect(try await store.eventCount(site: nil, device: nil) == 3)
            // Before the floor, seqs 1–6 would be "missing" below 8 once deleted; only 7 is.
            let missing = try await store.missingEvents(within: 3600, limit: 100, now: now)
            #expect(missing[S.device]?.map(\.seq) == [7], "\(missing)")
            #expect(missing[Self.other] == nil)
            let last = try await store.lastEventSequences()
            #expect(last[S.device] == EventKey(epoch: 7, seq: 10))
            #expect(last[Self.other] == EventKey(epoch: 4, seq: 3), "every event of m-2 is gone; its position is not")
            // A second pass finds nothing more; a late old event below the floor is deleted, the floor stays.
            var late = IngestBatch()
            late.events = [S.event(.faultCleared, session: nil, seq: 7, at: 60)]
            try await store.commit(late)
            #expect(try await store.prune(RetentionCutoffs(events: S.t0.addingTimeInterval(3600)), chunk: 2) == PruneCounts(events: 1))
            #expect(try await store.missingEvents(within: 3600, limit: 100, now: now)[S.device] == nil, "7 came, and went with retention: nothing is missing")
        }
    }

    @Test("sessions that ended before the cutoff and alerts cleared before it go; running sessions and active alerts stay; 0 days keeps for ever", arguments: [TestDatabase.sqlite, .postgres])
    func sessionsAndAlerts(_ backend: TestDatabase) async throws {
        try await S.withStore(backend) { store, _ in
            var batch = IngestBatch()
            for s in [S.session("old", outcome: "completed", startedAt: S.t0, endedAt: S.t0.addingTimeInterval(600)),
                      S.session("recent", outcome: "completed", startedAt: S.t0.addingTimeInterval(86_400), endedAt: S.t0.addingTimeInterval(87_000)),
                      S.session("never-ended", outcome: "running", startedAt: S.t0.addingTimeInterval(86_000), endedAt: nil)] {
                batch.sessions[s.sessionID] = s
            }
            try await store.commit(batch)
            let cleared = try await store.insertAlert(site: "clinic-north", device: "m-1", type: "offline", severity: .critical, message: "gone", at: S.t0)
            try await store.clearAlert(id: cleared, at: S.t0.addingTimeInterval(5))
            let active = try await store.insertAlert(site: "clinic-north", device: "m-1", type: "stale", severity: .warning, message: "quiet", at: S.t0)
            let cutoff = S.t0.addingTimeInterval(3600)
            #expect(try await store.prune(RetentionCutoffs(), chunk: 1) == PruneCounts(), "nothing set: nothing deleted")
            let counts = try await store.prune(RetentionCutoffs(events: cutoff, sessions: cutoff, alerts: cutoff), chunk: 1)
            #expect(counts == PruneCounts(sessions: 1, alerts: 1))
            let sessions = try await store.sessions(site: S.device.site.rawValue, device: S.device.device.rawValue, limit: 10).map(\.sessionID)
            #expect(Set(sessions) == ["recent", "never-ended"])
            #expect(try await store.alerts(activeOnly: false, limit: 10).map(\.id) == [active])
        }
    }

    @Test("forgetting a device drops its floors too: its numbering starts again", arguments: [TestDatabase.sqlite, .postgres])
    func forgetDropsFloors(_ backend: TestDatabase) async throws {
        try await S.withStore(backend) { store, _ in
            var batch = IngestBatch()
            batch.events = (1...3).map { S.event(.faultCleared, session: nil, seq: $0, at: 0) }
            try await store.commit(batch)
            _ = try await store.prune(RetentionCutoffs(events: S.t0.addingTimeInterval(60)), chunk: 10)
            #expect(try await store.lastEventSequences()[S.device] == EventKey(epoch: 7, seq: 3))
            _ = try await store.forgetDevice(S.device, record: DeviceRecord(site: S.device.site.rawValue, device: S.device.device.rawValue), writer: "test", at: S.t0)
            #expect(try await store.lastEventSequences()[S.device] == nil)
        }
    }

    @Test("the database's size is measured; on SQLite the free space beside it too", arguments: [TestDatabase.sqlite, .postgres])
    func storage(_ backend: TestDatabase) async throws {
        try await S.withStore(backend) { store, _ in
            let status = try await store.storageStatus()
            #expect(status.databaseBytes > 0)
            #expect((status.freeBytes != nil) == (backend == .sqlite), "\(status)")
            if let free = status.freeBytes { #expect(free > 0) }
        }
    }
}
