import FleetProtocol
import Foundation
import GRDB

/// EventLog: batches, events, sessions and gaps (retention: SQLiteStore+Retention).
extension SQLiteStore {
    /// Commits a batch; returns the events that were new (not duplicates).
    /// The statements are prepared once per connection (GRDB's statement
    /// cache), not parsed again for every row.
    @discardableResult
    public func commit(_ batch: IngestBatch) async throws -> [Event] {
        guard !batch.isEmpty else { return [] }
        return try await pool.write { db in
            let encoder = FleetJSON.makeEncoder()
            var inserted: [Event] = []
            if !batch.events.isEmpty {
                let insertEvent = try db.cachedStatement(sql: """
                    INSERT OR IGNORE INTO event(site, device, epoch, seq, ts, type, session_id, program, reason, historical, payload)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """)
                for (address, stamped, payload) in batch.events {
                    let e = stamped.body
                    try insertEvent.execute(arguments: [
                        address.site.rawValue, address.device.rawValue, Int64(bitPattern: stamped.envelope.epoch), Int64(bitPattern: stamped.envelope.seq),
                        stamped.envelope.ts.timeIntervalSince1970, e.type.rawValue, e.sessionID, e.program, e.reason?.rawValue,
                        stamped.envelope.historical, payload])
                    if db.changesCount > 0 { inserted.append(e) }
                }
            }
            if !batch.devices.isEmpty {
                let upsertDevice = try db.cachedStatement(sql: "INSERT OR REPLACE INTO device(site, device, json, updated_at, writer) VALUES (?, ?, ?, \(Self.now), ?)")
                for (address, json) in batch.devices {
                    try upsertDevice.execute(arguments: [address.site.rawValue, address.device.rawValue, json, batch.writer])
                }
            }
            if !batch.sessions.isEmpty {
                let upsertSession = try db.cachedStatement(sql: """
                    INSERT INTO session(session_id, site, device, program, started_at, ended_at, outcome, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(session_id) DO UPDATE SET program = coalesce(excluded.program, program),
                      started_at = coalesce(started_at, excluded.started_at), ended_at = coalesce(excluded.ended_at, ended_at),
                      outcome = CASE WHEN outcome IN ('completed','aborted','missed') THEN outcome ELSE excluded.outcome END,
                      reason = coalesce(excluded.reason, reason)
                    """)
                for (_, s) in batch.sessions {
                    try upsertSession.execute(arguments: [s.sessionID, s.site, s.device, s.program, s.startedAt?.timeIntervalSince1970,
                                                          s.endedAt?.timeIntervalSince1970, s.outcome, s.reason])
                }
            }
            if !batch.usage.isEmpty {
                let upsertUsage = try db.cachedStatement(sql: "INSERT OR REPLACE INTO usage_device(site, device, last, total) VALUES (?, ?, ?, ?)")
                for (address, u) in batch.usage {
                    try upsertUsage.execute(arguments: [address.site.rawValue, address.device.rawValue, try encoder.encode(u.last), try encoder.encode(u.total)])
                }
            }
            if !batch.usageDays.isEmpty {
                let upsertDay = try db.cachedStatement(sql: "INSERT OR REPLACE INTO usage_day(site, day, json) VALUES (?, ?, ?)")
                for (_, day) in batch.usageDays {
                    try upsertDay.execute(arguments: [day.site, day.day, try encoder.encode(day)])
                }
            }
            for (_, record) in batch.commands { try Self.saveCommand(record, db) }
            for entry in batch.audits { try Self.audit(entry, db) }
            return inserted
        }
    }

    public func eventCount(site: String?, device: String?) async throws -> Int {
        try await pool.read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM event WHERE (? IS NULL OR site = ?) AND (? IS NULL OR device = ?)", arguments: [site, site, device, device]) ?? 0
        }
    }

    /// Events missing from the table, per device: seqs below the highest
    /// stored one of an epoch that are not stored, for epochs with an event
    /// in the last `within` seconds (older ones no device still holds).
    /// At most `limit` per device.
    public func missingEvents(within: TimeInterval, limit: Int, now: Date) async throws -> [DeviceAddress: [EventKey]] {
        try await pool.read { db in
            var out: [DeviceAddress: [EventKey]] = [:]
            // Above each epoch's floor (what retention deleted), if any.
            let groups = try Row.fetchAll(db, sql: """
                SELECT e.site, e.device, e.epoch, count(*) AS n, max(e.seq) AS top, coalesce(f.seq, 0) AS floor FROM event e
                LEFT JOIN event_floor f ON f.site = e.site AND f.device = e.device AND f.epoch = e.epoch
                WHERE e.seq > coalesce(f.seq, 0)
                GROUP BY e.site, e.device, e.epoch HAVING n < top - floor AND max(e.ts) >= ?
                """, arguments: [now.timeIntervalSince1970 - within])
            for g in groups {
                guard let address = try? DeviceAddress(site: g["site"] as String, device: g["device"] as String) else { continue }
                let epoch: Int64 = g["epoch"], floor: Int64 = g["floor"]
                let stored = Set(try Int64.fetchAll(db, sql: "SELECT seq FROM event WHERE site = ? AND device = ? AND epoch = ? AND seq > ?",
                                                    arguments: [g["site"] as String, g["device"] as String, epoch, floor]))
                EventKey.appendMissing(epoch: epoch, above: floor, below: g["top"], stored: stored, limit: limit, to: &out[address, default: []])
            }
            return out
        }
    }

    /// The last stored (epoch, seq) of each device's events, or of what
    /// retention deleted of them (its floors), whichever is newer.
    public func lastEventSequences() async throws -> [DeviceAddress: EventKey] {
        try await pool.read { db in
            var out: [DeviceAddress: EventKey] = [:]
            for table in ["event", "event_floor"] {
                for row in try Row.fetchAll(db, sql: "SELECT site, device, max(epoch * 4294967296 + seq) AS k, epoch, seq FROM \(table) GROUP BY site, device") {
                    if let a = try? DeviceAddress(site: row["site"] as String, device: row["device"] as String) {
                        out.keepNewest(a, EventKey(epoch: UInt64(bitPattern: row["epoch"] as Int64), seq: UInt64(bitPattern: row["seq"] as Int64)))
                    }
                }
            }
            return out
        }
    }

    public func sessions(site: String, device: String, limit: Int) async throws -> [SessionRecord] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM session WHERE site = ? AND device = ? ORDER BY coalesce(started_at, ended_at) DESC LIMIT ?", arguments: [site, device, limit]).map(Self.session)
        }
    }

    public func sessionsStarted(site: String, since: Date) async throws -> Int {
        try await pool.read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM session WHERE site = ? AND started_at >= ?", arguments: [site, since.timeIntervalSince1970]) ?? 0
        }
    }

    /// pain_signal aborts since `since`, grouped by (site, program).
    public func painSignalAborts(since: Date) async throws -> [PainSignalCount] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT site, program, count(*) AS n FROM event WHERE type = 'session_aborted' AND reason = 'pain_signal' AND ts >= ? AND program IS NOT NULL
                GROUP BY site, program
                """, arguments: [since.timeIntervalSince1970]).map { PainSignalCount(site: $0["site"], program: $0["program"], count: $0["n"]) }
        }
    }

    static func session(_ r: Row) -> SessionRecord {
        SessionRecord(sessionID: r["session_id"], site: r["site"], device: r["device"], program: r["program"],
                      startedAt: (r["started_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                      endedAt: (r["ended_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                      outcome: r["outcome"], reason: r["reason"])
    }
}
