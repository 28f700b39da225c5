import FleetProtocol
import Foundation
import GRDB

/// The schema: named, append-only migrations, the same as PostgresStore's.
extension SQLiteStore {
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: devices, events, sessions, usage, alerts, commands, audit") { db in
            try db.create(table: "device") { t in
                t.column("site", .text).notNull()
                t.column("device", .text).notNull()
                t.column("json", .blob).notNull()
                t.primaryKey(["site", "device"])
            }
            try db.create(table: "event") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("site", .text).notNull()
                t.column("device", .text).notNull()
                t.column("epoch", .integer).notNull()
                t.column("seq", .integer).notNull()
                t.column("ts", .double).notNull()
                t.column("type", .text).notNull()
                t.column("session_id", .text)
                t.column("program", .text)
                t.column("reason", .text)
                t.column("historical", .boolean).notNull()
                t.column("payload", .blob).notNull()
                t.uniqueKey(["site", "device", "epoch", "seq"])
            }
            try db.create(index: "event_type_ts", on: "event", columns: ["type", "ts"])
            try db.create(table: "session") { t in
                t.primaryKey("session_id", .text)
                t.column("site", .text).notNull()
                t.column("device", .text).notNull()
                t.column("program", .text)
                t.column("started_at", .double)
                t.column("ended_at", .double)
                t.column("outcome", .text).notNull()
                t.column("reason", .text)
            }
            try db.create(index: "session_device", on: "session", columns: ["site", "device", "started_at"])
            try db.create(table: "usage_device") { t in
                t.column("site", .text).notNull()
                t.column("device", .text).notNull()
                t.column("last", .blob).notNull()      // the device's last cumulative counters
                t.column("total", .blob).notNull()     // reset-adjusted cumulative total
                t.primaryKey(["site", "device"])
            }
            try db.create(table: "usage_day") { t in
                t.column("site", .text).notNull()
                t.column("day", .text).notNull()
                t.column("json", .blob).notNull()
                t.primaryKey(["site", "day"])
            }
            try db.create(table: "alert") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("site", .text).notNull()
                t.column("device", .text)
                t.column("type", .text).notNull()
                t.column("severity", .text).notNull()
                t.column("message", .text).notNull()
                t.column("raised_at", .double).notNull()
                t.column("cleared_at", .double)
                t.column("acknowledged_by", .text)
                t.column("acknowledged_at", .double)
            }
            try db.create(table: "command") { t in
                t.primaryKey("id", .text)
                t.column("json", .blob).notNull()
                t.column("finished", .boolean).notNull().defaults(to: false)
                t.column("created_at", .double).notNull()
            }
            try db.create(table: "audit") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("at", .double).notNull()
                t.column("actor", .text).notNull()
                t.column("action", .text).notNull()
                t.column("targets", .text).notNull()
                t.column("outcome", .text).notNull()
                t.column("detail", .text)
            }
        }
        m.registerMigration("v2: rollouts") { db in
            try db.create(table: "rollout") { t in
                t.primaryKey("id", .text)
                t.column("json", .blob).notNull()
                t.column("active", .boolean).notNull()
                t.column("created_at", .double).notNull()
            }
        }
        m.registerMigration("v3: index only aborted events by time") { db in
            // The only query by type and time asks for aborted sessions (the
            // clinic's pain-signal warning). A partial index serves it; a full
            // (type, ts) index cost a B-tree insert for every stored event.
            try db.drop(index: "event_type_ts")
            try db.execute(sql: "CREATE INDEX event_aborted_ts ON event(ts) WHERE type = 'session_aborted'")
        }
        m.registerMigration("v4: replicas (device row writers, leases)") { db in
            try db.execute(sql: "ALTER TABLE device ADD COLUMN updated_at DOUBLE NOT NULL DEFAULT 0")
            try db.execute(sql: "ALTER TABLE device ADD COLUMN writer TEXT NOT NULL DEFAULT ''")
            try db.execute(sql: "CREATE INDEX device_updated ON device(updated_at)")
            try db.execute(sql: "CREATE TABLE lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at DOUBLE NOT NULL)")
        }
        m.registerMigration("v5: every rollout that can still change is active") { db in
            // v1–v4 flagged only running ones and those with offline devices;
            // the rollout loop now steps `active` rows only.
            let decoder = FleetJSON.makeDecoder()
            for json in try Data.fetchAll(db, sql: "SELECT json FROM rollout WHERE NOT active") {
                if let r = try? decoder.decode(Rollout.self, from: json), r.canChange { try saveRollout(r, db) }
            }
        }
        m.registerMigration("v6: retention (event floors, events by time)") { db in
            // The highest seq retention deleted per (device, epoch): the gap
            // scan starts above it. Events by time: retention deletes the
            // oldest in chunks without scanning the table.
            try db.execute(sql: "CREATE TABLE event_floor (site TEXT NOT NULL, device TEXT NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (site, device, epoch))")
            try db.execute(sql: "CREATE INDEX event_ts ON event(ts)")
        }
        return m
    }
}
