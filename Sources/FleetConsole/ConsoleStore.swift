import FleetProtocol
import Foundation
import Logging

/// Where the console keeps what it must not lose: events by
/// (site, device, epoch, seq), sessions, usage, alerts, commands, rollouts,
/// the audit log, and a restart cache of the device model.
///
/// Composed of one role protocol per concern, so code that needs one
/// concern can ask for that role alone (``CoordinatorLease`` holds a
/// ``LeaseStore`` and nothing more). Two
/// implementations with the same schema and named migrations:
/// ``SQLiteStore`` (GRDB, the embedded default) and ``PostgresStore``
/// (postgres-nio, for replicas sharing one database; docs/scaling.md).
/// Every method may wait on the database, never on MQTT; ingest hands the
/// store whole batches (``IngestBatch``), one transaction each. Rows hold
/// JSON documents; the store decodes them, skipping (and logging at debug)
/// a row that no longer decodes.
public protocol ConsoleStore: EventLog, DeviceRows, UsageStore, AlertStore, CommandStore, RolloutStore, AuditLog, LeaseStore, StorageHealth {
    /// Releases connections; the store is not used afterwards.
    func close() async
}

/// The device history: ingest's batches, the events and the sessions drawn
/// from them, the gaps between stored events, and their retention.
public protocol EventLog: Sendable {
    /// Commits a batch in one transaction; returns the events that were new
    /// (a duplicate by key is stored once, whatever any memory says). A
    /// finished command record is never overwritten by an unfinished one
    /// (a late write from a console that lost the coordinator lease).
    @discardableResult
    func commit(_ batch: IngestBatch) async throws -> [Event]
    /// The last stored (epoch, seq) of each device's events.
    func lastEventSequences() async throws -> [DeviceAddress: EventKey]
    /// Seqs missing below the highest stored one of each epoch with an event
    /// within `within` seconds of `now`; at most `limit` per device.
    func missingEvents(within: TimeInterval, limit: Int, now: Date) async throws -> [DeviceAddress: [EventKey]]
    func eventCount(site: String?, device: String?) async throws -> Int
    func sessions(site: String, device: String, limit: Int) async throws -> [SessionRecord]
    func sessionsStarted(site: String, since: Date) async throws -> Int
    /// pain_signal aborts since `since`, by (site, program).
    func painSignalAborts(since: Date) async throws -> [PainSignalCount]
    /// Deletes events, sessions and cleared alerts older than `cutoffs`, in
    /// transactions of at most `chunk` rows each (issue 20, item 5). For
    /// every (device, epoch) whose events it deletes it keeps the highest
    /// deleted seq (a floor): `missingEvents` does not ask for seqs at or
    /// below it, and `lastEventSequences` still knows where a device whose
    /// events are all gone stands.
    func prune(_ cutoffs: RetentionCutoffs, chunk: Int) async throws -> PruneCounts
}

/// The device rows: the restart cache of the device model, and what
/// replicas share of it.
public protocol DeviceRows: Sendable {
    /// Every device row that decodes.
    func loadDevices() async throws -> [DeviceRecord]
    /// Device rows written by other writers since `since` (database time);
    /// returns those that decode and the newest write time seen.
    func devicesChanged(since: Double, excludingWriter writer: String) async throws -> (records: [DeviceRecord], newest: Double)
    /// Forgetting a device (issue 20, item 10), in one transaction: deletes
    /// the device's events (their (epoch, seq) numbering is what a
    /// re-provisioned device starts again, and the start-up reads take each
    /// device's position from them), resets its usage baseline to zero
    /// counters (its total stays: the site's totals keep what it did), clears
    /// its active alerts at `at` (the history stays), and writes `record` as
    /// its device row. Sessions, daily usage, commands, rollouts and the
    /// audit log are not touched.
    func forgetDevice(_ address: DeviceAddress, record: DeviceRecord, writer: String, at: Date) async throws -> ForgetCounts
}

/// Usage: each device's counters and the sites' days (written by `commit`).
public protocol UsageStore: Sendable {
    func loadUsage() async throws -> [StoredUsage]
    func loadUsageDays() async throws -> [UsageDay]
}

public protocol AlertStore: Sendable {
    func insertAlert(site: String, device: String?, type: String, severity: Health, message: String, at: Date) async throws -> Int64
    func clearAlert(id: Int64, at: Date) async throws
    func acknowledgeAlert(id: Int64, by: String, at: Date) async throws -> AlertRecord?
    func alerts(activeOnly: Bool, limit: Int) async throws -> [AlertRecord]
}

public protocol CommandStore: Sendable {
    /// Saves `record` unless the stored one is finished.
    func saveCommand(_ record: CommandRecord) async throws
    func command(id: String) async throws -> CommandRecord?
    func unfinishedCommands() async throws -> [CommandRecord]
    func recentCommands(limit: Int) async throws -> [CommandRecord]
}

public protocol RolloutStore: Sendable {
    func saveRollout(_ rollout: Rollout) async throws
    /// Every rollout, newest first.
    func rollouts() async throws -> [Rollout]
    /// Runs `body` over the rollouts that can still change, in one write
    /// transaction that excludes every other such update (on PostgreSQL
    /// across replicas), and saves what it changed or added.
    func updateRollouts<T: Sendable>(_ body: @escaping @Sendable (inout [Rollout]) throws -> T) async throws -> T
}

public protocol AuditLog: Sendable {
    func audit(_ entry: AuditDraft) async throws
    /// The newest entries first.
    func auditEntries(limit: Int) async throws -> [AuditEntry]
}

/// Named leases on the database's clock (replicas, docs/scaling.md).
public protocol LeaseStore: Sendable {
    /// Takes or renews the lease `name` for `seconds` from now (the
    /// database's clock): true while `holder` has it. A lease another holder
    /// let expire is taken over.
    func acquireLease(_ name: String, holder: String, for seconds: Double) async throws -> Bool
    /// Gives the lease up at once (a clean shutdown), if `holder` has it.
    func releaseLease(_ name: String, holder: String) async throws
}

public protocol StorageHealth: Sendable {
    /// The database's size and the free space beside it.
    func storageStatus() async throws -> StorageStatus
}

/// JSON documents read from the store's rows.
enum StoredJSON {
    /// Decodes each document; one that no longer decodes is skipped and
    /// logged at debug (`what` names the table).
    static func decode<T: Decodable>(_ type: T.Type, _ documents: [Data], from table: String, logger: Logger) -> [T] {
        let decoder = FleetJSON.makeDecoder()
        return documents.compactMap { data in
            do { return try decoder.decode(T.self, from: data) } catch {
                logger.debug("skipped a row that does not decode", metadata: ["table": "\(table)", "error": "\(error)"])
                return nil
            }
        }
    }

    /// One device's usage row, or nil (logged at debug) if it does not decode.
    static func usage(site: String, device: String, last: Data, total: Data, logger: Logger) -> StoredUsage? {
        let decoder = FleetJSON.makeDecoder()
        do {
            return StoredUsage(address: try DeviceAddress(site: site, device: device),
                               last: try decoder.decode(Usage.self, from: last), total: try decoder.decode(Usage.self, from: total))
        } catch {
            logger.debug("skipped a row that does not decode", metadata: ["table": "usage_device", "device": "\(site)/\(device)", "error": "\(error)"])
            return nil
        }
    }
}

/// One device event's key.
public struct EventKey: Hashable, Sendable {
    public var epoch: UInt64
    public var seq: UInt64
    public init(epoch: UInt64, seq: UInt64) {
        self.epoch = epoch
        self.seq = seq
    }

    /// The seqs `floor`+1..<`top` of `epoch` that are not in `stored`, appended to
    /// `missing` while it holds fewer than `limit` (both stores' gap scan).
    static func appendMissing(epoch: Int64, above floor: Int64 = 0, below top: Int64, stored: Set<Int64>, limit: Int, to missing: inout [EventKey]) {
        var seq: Int64 = max(1, floor + 1)
        while seq < top, missing.count < limit {
            if !stored.contains(seq) { missing.append(EventKey(epoch: UInt64(bitPattern: epoch), seq: UInt64(bitPattern: seq))) }
            seq += 1
        }
    }
}

extension [DeviceAddress: EventKey] {
    /// Keeps `key` for `address` if it is newer than the one held.
    mutating func keepNewest(_ address: DeviceAddress, _ key: EventKey) {
        if let held = self[address], (held.epoch, held.seq) >= (key.epoch, key.seq) { return }
        self[address] = key
    }
}

/// What `forgetDevice` removed.
public struct ForgetCounts: Sendable, Equatable {
    public var events: Int
    public var alerts: Int
    public var usageBaselineReset: Bool
    public init(events: Int, alerts: Int, usageBaselineReset: Bool) {
        (self.events, self.alerts, self.usageBaselineReset) = (events, alerts, usageBaselineReset)
    }
}

/// A device's usage as stored: its last cumulative counters and the
/// reset-adjusted total (each a JSON-encoded `Usage` in its row).
public struct StoredUsage: Sendable, Equatable {
    public var address: DeviceAddress
    public var last: Usage
    public var total: Usage
}

public struct PainSignalCount: Sendable, Equatable {
    public var site: String
    public var program: String
    public var count: Int
}

/// An audit entry before the store numbers it.
public struct AuditDraft: Sendable {
    public var at: Date
    public var actor: String
    public var action: String
    public var targets: String
    public var outcome: String
    public var detail: String?
    public init(at: Date = Date(), actor: String, action: String, targets: String, outcome: String, detail: String? = nil) {
        (self.at, self.actor, self.action, self.targets, self.outcome, self.detail) = (at, actor, action, targets, outcome, detail)
    }
}

/// Writes gathered by ingest between two commits.
public struct IngestBatch: Sendable {
    var devices: [DeviceAddress: Data] = [:]
    /// Devices whose record changed; encoded into `devices` at commit time.
    var dirtyDevices: Set<DeviceAddress> = []
    var events: [(DeviceAddress, Stamped<Event>, Data)] = []
    var sessions: [String: SessionRecord] = [:]
    var usage: [DeviceAddress: (last: Usage, total: Usage)] = [:]
    var usageDays: [String: UsageDay] = [:]
    /// Command records changed by device replies and sweeps (the latest
    /// version of each), and the audit entries of those that finished.
    var commands: [String: CommandRecord] = [:]
    var audits: [AuditDraft] = []
    /// Who wrote the device rows (the console's instance): replicas read
    /// each other's rows, not their own.
    var writer = ""

    public init() {}

    var isEmpty: Bool {
        devices.isEmpty && dirtyDevices.isEmpty && events.isEmpty && sessions.isEmpty && usage.isEmpty && usageDays.isEmpty
            && commands.isEmpty && audits.isEmpty
    }
    var count: Int { devices.count + events.count + sessions.count + usage.count + usageDays.count + commands.count + audits.count }

    /// Puts a batch that could not be committed back in front of what came since.
    mutating func requeue(_ failed: IngestBatch) {
        events.insert(contentsOf: failed.events, at: 0)
        devices.merge(failed.devices) { new, _ in new }
        sessions.merge(failed.sessions) { new, _ in new }
        usage.merge(failed.usage) { new, _ in new }
        usageDays.merge(failed.usageDays) { new, _ in new }
        commands.merge(failed.commands) { new, _ in new }
        audits.insert(contentsOf: failed.audits, at: 0)
    }
}
