import Foundation

/// How long the console keeps what devices fill it with (`retention:` in
/// its configuration; docs/operations.md, "Quotas and retention"). The
/// coordinator deletes older rows every `intervalSeconds`, in chunks of
/// `RetentionSettings.chunk` rows, one transaction each, so ingest's commits
/// never wait long behind it. 0 days keeps that kind of row for ever.
/// Usage totals, per-day usage, commands, rollouts and the audit log are
/// kept: they are small, and the audit log is a record people rely on.
public struct RetentionSettings: Sendable, Equatable {
    /// Events, by their time (a device's future time counts as the time it arrived).
    public var eventsDays: Double = 90
    /// Sessions, by their end (or start, if they never ended).
    public var sessionsDays: Double = 365
    /// Alerts cleared this long ago (active ones are always kept).
    public var alertsDays: Double = 365
    /// How often the coordinator deletes (the first run is a minute after it starts).
    public var intervalSeconds: Double = 3600
    public init() {}

    /// Rows deleted per transaction.
    static let chunk = 5_000

    /// The times before which each kind of row goes; nil: kept for ever.
    func cutoffs(now: Date) -> RetentionCutoffs {
        func before(_ days: Double) -> Date? { days > 0 ? now.addingTimeInterval(-days * 86_400) : nil }
        return RetentionCutoffs(events: before(eventsDays), sessions: before(sessionsDays), alerts: before(alertsDays))
    }
}

/// What ``EventLog/prune(_:chunk:)`` deletes: rows older than each time.
public struct RetentionCutoffs: Sendable, Equatable {
    public var events: Date?
    public var sessions: Date?
    public var alerts: Date?
    public init(events: Date? = nil, sessions: Date? = nil, alerts: Date? = nil) {
        (self.events, self.sessions, self.alerts) = (events, sessions, alerts)
    }
}

/// Rows deleted by one pass of retention.
public struct PruneCounts: Sendable, Equatable {
    public var events = 0
    public var sessions = 0
    public var alerts = 0
    public init(events: Int = 0, sessions: Int = 0, alerts: Int = 0) {
        (self.events, self.sessions, self.alerts) = (events, sessions, alerts)
    }
    public var total: Int { events + sessions + alerts }
}

/// The database's size and the room left for it.
public struct StorageStatus: Sendable, Equatable {
    /// The database's size on disk (SQLite: its file and WAL; PostgreSQL:
    /// `pg_database_size`).
    public var databaseBytes: Int64
    /// Free bytes on the file system that holds it, for an unprivileged
    /// writer; nil when the console cannot see that disk (PostgreSQL on
    /// another machine: its host's monitoring watches it).
    public var freeBytes: Int64?
    public init(databaseBytes: Int64, freeBytes: Int64?) {
        (self.databaseBytes, self.freeBytes) = (databaseBytes, freeBytes)
    }
}

/// One stored event's key and where it belongs, as retention reads them to
/// record the floors of what it deletes.
struct PrunedEvent {
    var site: String
    var device: String
    var epoch: Int64
    var seq: Int64
}

extension PrunedEvent {
    /// The highest deleted seq of each (site, device, epoch): below it, the
    /// gap scan no longer asks for missing events (they were deleted, not lost).
    static func floors(_ events: [PrunedEvent]) -> [PrunedEvent] {
        var top: [String: PrunedEvent] = [:]
        for e in events {
            let key = "\(e.site)/\(e.device)/\(e.epoch)"
            if (top[key]?.seq ?? .min) < e.seq { top[key] = e }
        }
        return Array(top.values)
    }
}
