import FleetProtocol
import Foundation

/// What the console knows about one device (persisted as JSON in `device`;
/// public as the store's record type, opaque outside this module).
public struct DeviceRecord: Codable, Sendable {
    var site: String
    var device: String
    var online = false
    var offlineReason: String?
    var epoch: UInt64?
    var lastSeen: Date?
    var onlineChangedAt: Date?
    var agentVersion: String?
    var programs: [String] = []
    var session: SessionNow?
    var telemetry: Telemetry?
    var telemetryAt: Date?
    var lastTelemetrySeq: UInt64?
    var telemetryGaps: Int = 0
    var usage: Usage?
    var desired: DesiredConfig?
    var desiredSince: Date?
    var reported: ReportedConfig?
    /// When the console received `reported` (its clock): a rollout counts
    /// telemetry after this as "healthy after applying".
    var reportedAt: Date?
    var lastEventEpoch: UInt64?
    var lastEventSeq: UInt64?
    var lastResyncRequest: Date?
    /// The newest (epoch, seq) applied per retained topic: a late or repeated
    /// message never overrides a newer one.
    var lastStatus: [UInt64]?
    var lastUsage: [UInt64]?
    var lastReported: [UInt64]?
    // The fields below are optional so that device rows written before them still decode.
    /// Events refused for an implausible jump of `seq` (`FleetModel.maxEventGap`),
    /// the last one's time and what it was: a device fault, alerted as `sequence_fault`.
    var sequenceFaults: Int?
    var sequenceFaultAt: Date?
    var sequenceFaultDetail: String?
    /// Messages dropped over the device's ingest quota (`DeviceQuota`), and
    /// the last one's time: alerted as `quota_exceeded`.
    var quotaDrops: Int?
    var quotaExceededAt: Date?
    /// The epoch whose start made the console ask for a `resync` (once per epoch).
    var epochResyncAsked: UInt64?
    /// When `usage.outbox_dropped` last grew: `outbox_drops` is raised while
    /// this is within `health.outbox_drop_window_s`.
    var outboxDropsGrewAt: Date?
    /// When an admin last forgot this device (`POST …/forget`, issue 20
    /// item 10): everything the console knew of it before was dropped. It
    /// tells records of an earlier life of the id from those of the current
    /// one (replicas: `FleetModel.adopt`).
    var forgottenAt: Date?
    /// Set by forgetting (item 18): the device shows `revoked`, and its
    /// retained messages — published before the revocation and replayed by
    /// the broker at every subscribe — are ignored. Cleared by the first live
    /// message: only a client holding the id's broker credentials can send
    /// one, so the id was provisioned again, and it starts fresh.
    var revokedAt: Date?

    init(site: String, device: String) {
        self.site = site
        self.device = device
    }

    var faults: [String] { telemetry?.faults ?? [] }

    var state: DeviceState {
        if revokedAt != nil { return .revoked }
        if !online { return .offline }
        if !faults.isEmpty || telemetry?.sessionState == .fault { return .faulted }
        if session != nil { return .inSession }
        return .idle
    }

    /// Desired and reported config disagree (a rollout in flight, or drift).
    var configDiffers: Bool {
        guard let desired else { return false }
        return reported?.appliedVersion != desired.version
    }

    /// A record that knows nothing of the device but what the console itself
    /// keeps on the broker for it (its retained desired config, which a
    /// re-provisioned massager should still get), forgotten at `at`.
    func forgotten(at: Date, revoked: Bool) -> DeviceRecord {
        var r = DeviceRecord(site: site, device: device)
        r.desired = desired
        r.desiredSince = desired == nil ? nil : at
        r.forgottenAt = at
        r.revokedAt = revoked ? at : nil
        return r
    }

    var configVersions: ConfigVersions {
        ConfigVersions(desired: desired?.version, reported: reported?.appliedVersion ?? reported.map { $0.state == .applied ? $0.version : 0 },
                       state: reported?.state.rawValue, error: reported?.error)
    }
}

/// The in-memory fleet: devices by address, cumulative usage, daily usage,
/// active alerts. Behind a Mutex in `FleetState`, shared by the console's services.
struct FleetModel: Sendable {
    var devices: [DeviceAddress: DeviceRecord] = [:]
    var usage: [DeviceAddress: (last: Usage, total: Usage)] = [:]
    var usageDays: [String: UsageDay] = [:]
    var activeAlerts: [AlertKey: ActiveAlert] = [:]
    /// Each device's ingest quota as it stands (not persisted).
    var quotas = IngestQuotas()
    /// The database's size and free disk, as last measured (housekeeping).
    var storage: StorageStatus?
    /// The `site` of alerts about the console itself (`disk_space`): no
    /// site id starts with `_`, and only a token for every site sees them.
    static let consoleSite = "_console"
    /// How long `quota_exceeded` stays raised after the last dropped message.
    static let quotaAlertSeconds: TimeInterval = 600
    /// Devices with an event gap seen while their last `resync` was too
    /// recent to ask again; the health loop asks once it may.
    var resyncOwed: Set<DeviceAddress> = []
    /// Events known to be missing, by device: the seqs a gap skipped, until
    /// they arrive. While some remain, `resync` is asked again (at most
    /// `maxResyncAttempts` times in all).
    var holes: [DeviceAddress: Set<EventKey>] = [:]
    var resyncAttempts: [DeviceAddress: Int] = [:]
    static let maxHolesPerDevice = 1_000
    static let maxResyncAttempts = 3
    /// The largest jump of an event `seq` the console believes (within an
    /// epoch, or to the first event of a new one): a million events, more
    /// than a device sends in years. A larger jump is a device fault: the
    /// event is refused (counted in `fleet_ingest_sequence_faults_total`) and
    /// `sequence_fault` is raised, so one bad message cannot make every later
    /// event of the device look like a late duplicate.
    static let maxEventGap: UInt64 = 1_000_000
    /// How long `sequence_fault` stays raised after the last refused event.
    static let sequenceFaultAlertSeconds: TimeInterval = 600

    /// Notes the seqs `range` of `epoch` as missing for `address`. Bounded
    /// work, not just bounded memory: it stops after the first
    /// `maxHolesPerDevice` seqs, however large the range (a huge gap used to
    /// be walked to its end inside the model lock, stopping the console).
    mutating func addHoles(_ address: DeviceAddress, epoch: UInt64, _ range: Range<UInt64>) {
        var set = holes[address] ?? []
        var seq = range.lowerBound
        while seq < range.upperBound, set.count < Self.maxHolesPerDevice {
            set.insert(EventKey(epoch: epoch, seq: seq))
            seq += 1
        }
        holes[address] = set
    }

    /// An event arrived: it is no longer missing.
    mutating func fillHole(_ address: DeviceAddress, epoch: UInt64, seq: UInt64) {
        guard var set = holes[address], set.remove(EventKey(epoch: epoch, seq: seq)) != nil else { return }
        if set.isEmpty {
            holes[address] = nil
            resyncAttempts[address] = nil
        } else {
            holes[address] = set
        }
    }

    struct AlertKey: Hashable, Sendable {
        var site: String
        var device: String?
        var type: String
    }

    struct ActiveAlert: Sendable {
        var id: Int64
        var severity: Health
        var message: String
        /// Last time the condition was seen true (for hysteresis on clearing).
        var lastSeen: Date
    }

    /// Drops what the model knows of `address` but its usage total (history:
    /// the site's totals keep what the device did) and puts `tombstone` in
    /// its place. The usage baseline goes: the next counters are counted
    /// whole (a re-provisioned massager starts a new ledger).
    mutating func forget(_ address: DeviceAddress, tombstone: DeviceRecord) {
        devices[address] = tombstone
        if let u = usage[address] { usage[address] = (Usage(), u.total) }
        holes[address] = nil
        resyncAttempts[address] = nil
        resyncOwed.remove(address)
        quotas.remove(address)
        let (site, device) = (address.site.rawValue, address.device.rawValue)
        activeAlerts = activeAlerts.filter { !($0.key.site == site && $0.key.device == device) }
    }

    /// Folds in another replica's row of `address` (`deviceSyncLoop`). A row
    /// of a later life of the id (forgotten later) replaces this one whole,
    /// and what this replica held of the earlier life goes as in `forget`;
    /// one of an earlier life is ignored; within one life facets merge
    /// (`DeviceRecord.merge`).
    mutating func adopt(_ other: DeviceRecord, at address: DeviceAddress) {
        guard var mine = devices[address] else {
            devices[address] = other
            return
        }
        let ours = mine.forgottenAt ?? .distantPast, theirs = other.forgottenAt ?? .distantPast
        if theirs > ours {
            forget(address, tombstone: other)
        } else if theirs == ours {
            mine.merge(other)
            devices[address] = mine
        }
    }

    mutating func record(_ address: DeviceAddress) -> DeviceRecord {
        devices[address] ?? DeviceRecord(site: address.site.rawValue, device: address.device.rawValue)
    }

    /// The record moved out of the model, to be changed and put back
    /// (`devices[address] = record`): ingest changes one per message, and a
    /// record that is not also held by the dictionary is changed in place
    /// instead of copied field by field.
    mutating func takeRecord(_ address: DeviceAddress) -> DeviceRecord {
        devices.removeValue(forKey: address) ?? DeviceRecord(site: address.site.rawValue, device: address.device.rawValue)
    }
}
