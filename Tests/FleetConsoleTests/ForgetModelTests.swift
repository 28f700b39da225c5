@testable import FleetConsole
import FleetProtocol
import Foundation
import Testing

/// Forgetting a device in the fleet model (issue 20, items 10 and 18): what
/// a forget drops and keeps, and how replicas fold in each other's rows of an
/// id that was forgotten (`FleetModel.adopt`).
@Suite("Forgetting a device: the model")
struct ForgetModelTests {
    static let address = try! DeviceAddress(site: "clinic-north", device: "m-1")

    static func thiefRecord() -> DeviceRecord {
        var r = DeviceRecord(site: "clinic-north", device: "m-1")
        r.online = true
        r.epoch = 9_007_199_254_740_992
        r.lastStatus = [9_007_199_254_740_992, 1]
        r.lastEventEpoch = 9_007_199_254_740_992
        r.lastEventSeq = 5
        r.desired = DesiredConfig(version: 4, config: DeviceConfig())
        return r
    }

    @Test("a forget keeps only the console's own desired config and the usage total; the record shows revoked")
    func forgetDropsNumbers() {
        var m = FleetModel()
        m.devices[Self.address] = Self.thiefRecord()
        let used = Usage(sessions: SessionCounts(started: 3))
        m.usage[Self.address] = (used, used)
        m.addHoles(Self.address, epoch: 9_007_199_254_740_992, 1..<3)
        m.activeAlerts[.init(site: "clinic-north", device: "m-1", type: "offline")] = .init(id: 1, severity: .critical, message: "", lastSeen: Date())
        let at = Date()
        m.forget(Self.address, tombstone: Self.thiefRecord().forgotten(at: at, revoked: true))
        let r = m.devices[Self.address]
        #expect(r?.state == .revoked && r?.online == false && r?.epoch == nil && r?.lastEventEpoch == nil && r?.lastStatus == nil)
        #expect(r?.desired?.version == 4 && r?.forgottenAt == at && r?.revokedAt == at)
        #expect(m.usage[Self.address]?.last == Usage() && m.usage[Self.address]?.total == used)
        #expect(m.holes[Self.address] == nil && m.activeAlerts.isEmpty)
    }

    @Test("replicas: a row of a later life of the id replaces the record whole, one of an earlier life is ignored, and readmission wins within a life")
    func replicasAdoptByLife() {
        let forgotten = Date(timeIntervalSince1970: 1_790_000_000)
        let tombstone = Self.thiefRecord().forgotten(at: forgotten, revoked: true)

        // Another replica forgot it: its row replaces the thief's numbers here, though they look "newer".
        var m = FleetModel()
        m.devices[Self.address] = Self.thiefRecord()
        m.adopt(tombstone, at: Self.address)
        #expect(m.devices[Self.address]?.state == .revoked && m.devices[Self.address]?.epoch == nil)

        // A late row of the earlier life changes nothing.
        m.adopt(Self.thiefRecord(), at: Self.address)
        #expect(m.devices[Self.address]?.state == .revoked && m.devices[Self.address]?.epoch == nil)

        // Another replica heard the new massager live: readmitted, at epoch 1.
        var readmitted = tombstone.forgotten(at: forgotten, revoked: false)
        readmitted.online = true
        readmitted.epoch = 1
        readmitted.lastStatus = [1, 1]
        m.adopt(readmitted, at: Self.address)
        #expect(m.devices[Self.address]?.revokedAt == nil && m.devices[Self.address]?.epoch == 1 && m.devices[Self.address]?.online == true)

        // This replica's own stale revoked view does not undo it.
        m.adopt(tombstone, at: Self.address)
        #expect(m.devices[Self.address]?.revokedAt == nil && m.devices[Self.address]?.epoch == 1)
    }
}
