import FleetProtocol
import Foundation
import Logging
import PostgresNIO

/// EventLog: batches, events, sessions and gaps (retention: PostgresStore+Retention).
extension PostgresStore {
    // MARK: Batches

    /// Rows per multi-row statement: well under PostgreSQL's 65,535 parameters.
    static let rowsPerStatement = 1000

    @discardableResult
    public func commit(_ batch: IngestBatch) async throws -> [Event] {
        guard !batch.isEmpty else { return [] }
        let encoder = FleetJSON.makeEncoder()
        // Everything encoded before the transaction starts: it holds locks only while talking to the server.
        let events = batch.events.sorted { ($0.0, $0.1.envelope.epoch, $0.1.envelope.seq) < ($1.0, $1.1.envelope.epoch, $1.1.envelope.seq) }
        let devices = batch.devices.sorted { $0.key < $1.key }
        let sessions = batch.sessions.values.sorted { $0.sessionID < $1.sessionID }
        let usage = try batch.usage.sorted { $0.key < $1.key }.map { ($0.key, try encoder.encode($0.value.last), try encoder.encode($0.value.total)) }
        let days = try batch.usageDays.values.sorted { ($0.site, $0.day) < ($1.site, $1.day) }.map { ($0, try encoder.encode($0)) }
        let commands = try batch.commands.values.sorted { $0.id < $1.id }.map { ($0, try FleetJSON.encode($0)) }
        let logger = self.logger
        return try await client.withTransaction(logger: logger) { c in
            var inserted: [Event] = []
            for chunk in events.chunked(Self.rowsPerStatement) {
                var binds = PostgresBindings(capacity: chunk.count * 11)
                for (address, stamped, payload) in chunk {
                    let e = stamped.body
                    binds.append(address.site.rawValue); binds.append(address.device.rawValue)
                    binds.append(Int64(bitPattern: stamped.envelope.epoch)); binds.append(Int64(bitPattern: stamped.envelope.seq))
                    binds.append(stamped.envelope.ts.timeIntervalSince1970); binds.append(Self.text(e.type.rawValue))
                    binds.append(e.sessionID.map(Self.text)); binds.append(e.program.map(Self.text)); binds.append(e.reason.map { Self.text($0.rawValue) })
                    binds.append(stamped.envelope.historical); try binds.append(payload)
                }
                let sql = "INSERT INTO event (site, device, epoch, seq, ts, type, session_id, program, reason, historical, payload) VALUES "
                    + Self.placeholders(rows: chunk.count, columns: 11) + " ON CONFLICT DO NOTHING RETURNING site, device, epoch, seq"
                var new = Set<EventRow>()
                for try await (site, device, epoch, seq) in try await c.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger)
                    .decode((String, String, Int64, Int64).self) {
                    new.insert(EventRow(site: site, device: device, epoch: epoch, seq: seq))
                }
                for (address, stamped, _) in chunk {
                    let key = EventRow(site: address.site.rawValue, device: address.device.rawValue,
                                       epoch: Int64(bitPattern: stamped.envelope.epoch), seq: Int64(bitPattern: stamped.envelope.seq))
                    // A key sent twice in one batch comes back once: only its first copy is new.
                    if new.remove(key) != nil { inserted.append(stamped.body) }
                }
            }
            for chunk in devices.chunked(Self.rowsPerStatement) {
                var binds = PostgresBindings(capacity: chunk.count * 3 + 1)
                binds.append(batch.writer)
                for (address, json) in chunk { binds.append(address.site.rawValue); binds.append(address.device.rawValue); try binds.append(json) }
                // $1 is the writer; each row is (site, device, json).
                let rows = (0..<chunk.count).map { i in "($\(3 * i + 2), $\(3 * i + 3), $\(3 * i + 4), \(Self.now), $1)" }.joined(separator: ", ")
                try await c.query(PostgresQuery(unsafeSQL: "INSERT INTO device (site, device, json, updated_at, writer) VALUES " + rows
                    + " ON CONFLICT (site, device) DO UPDATE SET json = excluded.json, updated_at = excluded.updated_at, writer = excluded.writer",
                    binds: binds), logger: logger)
            }
            for chunk in sessions.chunked(Self.rowsPerStatement) {
                var binds = PostgresBindings(capacity: chunk.count * 8)
                for s in chunk {
                    binds.append(Self.text(s.sessionID)); binds.append(s.site); binds.append(s.device); binds.append(s.program.map(Self.text))
                    binds.append(s.startedAt?.timeIntervalSince1970); binds.append(s.endedAt?.timeIntervalSince1970)
                    binds.append(Self.text(s.outcome)); binds.append(s.reason.map(Self.text))
                }
                // The same merge as SQLiteStore's: a late start never reopens an ended session.
                try await c.query(PostgresQuery(unsafeSQL: """
                    INSERT INTO session (session_id, site, device, program, started_at, ended_at, outcome, reason) VALUES \(Self.placeholders(rows: chunk.count, columns: 8))
                    ON CONFLICT (session_id) DO UPDATE SET program = coalesce(excluded.program, session.program),
                      started_at = coalesce(session.started_at, excluded.started_at), ended_at = coalesce(excluded.ended_at, session.ended_at),
                      outcome = CASE WHEN session.outcome IN ('completed','aborted','missed') THEN session.outcome ELSE excluded.outcome END,
                      reason = coalesce(excluded.reason, session.reason)
                    """, binds: binds), logger: logger)
            }
            for chunk in usage.chunked(Self.rowsPerStatement) {
                var binds = PostgresBindings(capacity: chunk.count * 4)
                for (address, last, total) in chunk { binds.append(address.site.rawValue); binds.append(address.device.rawValue); try binds.append(last); try binds.append(total) }
                try await c.query(PostgresQuery(unsafeSQL: "INSERT INTO usage_device (site, device, last, total) VALUES " + Self.placeholders(rows: chunk.count, columns: 4)
                    + " ON CONFLICT (site, device) DO UPDATE SET last = excluded.last, total = excluded.total", binds: binds), logger: logger)
            }
            for chunk in days.chunked(Self.rowsPerStatement) {
                var binds = PostgresBindings(capacity: chunk.count * 3)
                for (day, json) in chunk { binds.append(day.site); binds.append(day.day); try binds.append(json) }
                try await c.query(PostgresQuery(unsafeSQL: "INSERT INTO usage_day (site, day, json) VALUES " + Self.placeholders(rows: chunk.count, columns: 3)
                    + " ON CONFLICT (site, day) DO UPDATE SET json = excluded.json", binds: binds), logger: logger)
            }
            for (record, json) in commands { try await Self.saveCommand(record, json: json, on: c, logger: logger) }
            for entry in batch.audits { try await Self.audit(entry, on: c, logger: logger) }
            return inserted
        }
    }

    private struct EventRow: Hashable {
        var site: String, device: String, epoch: Int64, seq: Int64
    }

    /// PostgreSQL's `text` cannot hold NUL (SQLSTATE 22021), and one such
    /// value from a device would fail every batch after it: NUL becomes
    /// U+FFFD in text columns. (The raw payload is kept, as bytea.)
    static func text(_ s: String) -> String {
        s.contains("\u{0}") ? s.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}") : s
    }

    /// `($1, $2, $3), ($4, $5, $6), …`
    static func placeholders(rows: Int, columns: Int) -> String {
        var out = ""
        out.reserveCapacity(rows * columns * 5)
        var n = 0
        for row in 0..<rows {
            out += row == 0 ? "(" : ", ("
            for column in 0..<columns {
                n += 1
                out += column == 0 ? "$\(n)" : ", $\(n)"
            }
            out += ")"
        }
        return out
    }

    /// The last stored (epoch, seq) of each device's events, or of what
    /// retention deleted of them (its floors), whichever is newer.
    public func lastEventSequences() async throws -> [DeviceAddress: EventKey] {
        var out: [DeviceAddress: EventKey] = [:]
        for query: PostgresQuery in [
            "SELECT DISTINCT ON (site, device) site, device, epoch, seq FROM event ORDER BY site DESC, device DESC, epoch DESC, seq DESC",
            "SELECT DISTINCT ON (site, device) site, device, epoch, seq FROM event_floor ORDER BY site DESC, device DESC, epoch DESC, seq DESC",
        ] {
            for try await (site, device, epoch, seq) in try await client.query(query, logger: logger).decode((String, String, Int64, Int64).self) {
                if let a = try? DeviceAddress(site: site, device: device) { out.keepNewest(a, EventKey(epoch: UInt64(bitPattern: epoch), seq: UInt64(bitPattern: seq))) }
            }
        }
        return out
    }

    public func missingEvents(within: TimeInterval, limit: Int, now: Date) async throws -> [DeviceAddress: [EventKey]] {
        let since = now.timeIntervalSince1970 - within
        // Above each epoch's floor (what retention deleted), if any.
        let groups = try await collect(client.query("""
            SELECT e.site, e.device, e.epoch, max(e.seq), coalesce(f.seq, 0) FROM event e
            LEFT JOIN event_floor f ON f.site = e.site AND f.device = e.device AND f.epoch = e.epoch
            WHERE e.seq > coalesce(f.seq, 0)
            GROUP BY e.site, e.device, e.epoch, f.seq HAVING count(*) < max(e.seq) - coalesce(f.seq, 0) AND max(e.ts) >= \(since)
            """, logger: logger).decode((String, String, Int64, Int64, Int64).self))
        var out: [DeviceAddress: [EventKey]] = [:]
        for (site, device, epoch, top, floor) in groups {
            guard let address = try? DeviceAddress(site: site, device: device) else { continue }
            let stored = Set(try await collect(client.query("SELECT seq FROM event WHERE site = \(site) AND device = \(device) AND epoch = \(epoch) AND seq > \(floor)", logger: logger)
                .decode(Int64.self)))
            EventKey.appendMissing(epoch: epoch, above: floor, below: top, stored: stored, limit: limit, to: &out[address, default: []])
        }
        return out
    }

    // MARK: Queries

    public func eventCount(site: String?, device: String?) async throws -> Int {
        let rows = try await client.query("""
            SELECT count(*) FROM event WHERE (\(site)::text IS NULL OR site = \(site)) AND (\(device)::text IS NULL OR device = \(device))
            """, logger: logger)
        return Int(try await collect(rows.decode(Int64.self)).first ?? 0)
    }

    public func sessions(site: String, device: String, limit: Int) async throws -> [SessionRecord] {
        try await collect(client.query("""
            SELECT session_id, site, device, program, started_at, ended_at, outcome, reason FROM session WHERE site = \(site) AND device = \(device)
            ORDER BY coalesce(started_at, ended_at) DESC LIMIT \(Int64(limit))
            """, logger: logger).decode((String, String, String, String?, Double?, Double?, String, String?).self)).map {
            SessionRecord(sessionID: $0.0, site: $0.1, device: $0.2, program: $0.3, startedAt: $0.4.map(Date.init(timeIntervalSince1970:)),
                          endedAt: $0.5.map(Date.init(timeIntervalSince1970:)), outcome: $0.6, reason: $0.7)
        }
    }

    public func sessionsStarted(site: String, since: Date) async throws -> Int {
        let rows = try await client.query("SELECT count(*) FROM session WHERE site = \(site) AND started_at >= \(since.timeIntervalSince1970)", logger: logger)
        return Int(try await collect(rows.decode(Int64.self)).first ?? 0)
    }

    public func painSignalAborts(since: Date) async throws -> [PainSignalCount] {
        try await collect(client.query("""
            SELECT site, program, count(*) FROM event WHERE type = 'session_aborted' AND reason = 'pain_signal' AND ts >= \(since.timeIntervalSince1970)
              AND program IS NOT NULL GROUP BY site, program
            """, logger: logger).decode((String, String, Int64).self)).map { PainSignalCount(site: $0.0, program: $0.1, count: Int($0.2)) }
    }
}
