import FleetConsole
import FleetProtocol
import Foundation

/// What `fleet-console`'s client subcommands print for each kind of API
/// record: a `TextTable` per list, and the few lines above a device's or a
/// rollout's table. Pure: records in, text out (`--json` prints the API's
/// own JSON instead, `prettyJSON`).
public enum ConsoleTables {
    /// A time as the API writes it (RFC 3339, UTC), or "-" when absent.
    public static func when(_ date: Date?) -> String {
        guard let date else { return "-" }
        return RFC3339.string(from: date)
    }

    /// The API's JSON, indented with sorted keys; as given when it is not JSON.
    public static func prettyJSON(_ data: Data) -> String {
        if let object = try? JSONSerialization.jsonObject(with: data),
           let pretty = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]) {
            return String(decoding: pretty, as: UTF8.self)
        }
        return String(decoding: data, as: UTF8.self)
    }

    // MARK: devices

    public static func devices(_ devices: [DeviceSummary]) -> TextTable {
        TextTable(["SITE", "DEVICE", "STATE", "HEALTH", "PROGRAM", "CONFIG", "ALERTS"], devices.map {
            [$0.site, $0.device, $0.state.rawValue, $0.health.rawValue, $0.session?.program ?? "-",
             "\($0.config.reported.map(String.init) ?? "-")/\($0.config.desired.map(String.init) ?? "-")", $0.alerts.joined(separator: ",")]
        })
    }

    /// The lines above a device's session table: state and health, the
    /// running session, the latest telemetry.
    public static func deviceHeadline(_ detail: DeviceDetail) -> [String] {
        let d = detail.summary
        var lines = ["\(d.site)/\(d.device): \(d.state.rawValue), health \(d.health.rawValue), epoch \(d.epoch.map(String.init) ?? "-"), last seen \(when(d.lastSeen))"]
        if let s = d.session { lines.append("session \(s.sessionID) \(s.program ?? "") \(s.state)") }
        if let t = detail.telemetry {
            let step = t.step.map { "\($0.target) \($0.technique) level \($0.intensity)" } ?? "-"
            lines.append("telemetry: \(t.sessionState.rawValue), step \(step), motor \(t.motorTempC) °C, pressure \(t.pressureMMHg.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
        }
        return lines
    }

    public static func sessions(_ sessions: [SessionRecord]) -> TextTable {
        TextTable(["SESSION", "PROGRAM", "STARTED", "OUTCOME", "REASON"], sessions.map {
            [$0.sessionID, $0.program ?? "-", when($0.startedAt), $0.outcome, $0.reason ?? ""]
        })
    }

    public static func forgotten(_ r: ForgetResult) -> TextTable {
        TextTable(["SITE", "DEVICE", "STATE", "FORGOTTEN", "EVENTS DELETED", "ALERTS CLEARED", "USAGE BASELINE", "KNOWN"], [[
            r.site, r.device, r.state.rawValue, when(r.forgottenAt), "\(r.eventsDeleted)", "\(r.alertsCleared)",
            r.usageBaselineReset ? "reset" : "-", r.wasKnown ? "yes" : "no",
        ]])
    }

    // MARK: commands

    /// A command's per-device results: the error's code and message where
    /// one failed, else the session it started (if any).
    public static func commandResults(_ record: CommandRecord) -> TextTable {
        TextTable(["SITE", "DEVICE", "STATE", "DETAIL"], record.results.map {
            [$0.site, $0.device, $0.state.rawValue, $0.error.map { "\($0.code.rawValue): \($0.message)" } ?? ($0.result?["session_id"]?.stringValue ?? "")]
        })
    }

    // MARK: alerts, usage, audit

    public static func alerts(_ alerts: [AlertRecord]) -> TextTable {
        TextTable(["ID", "SEVERITY", "SITE", "DEVICE", "TYPE", "RAISED", "CLEARED", "ACK", "MESSAGE"], alerts.map {
            ["\($0.id)", $0.severity.rawValue, $0.site, $0.device ?? "*", $0.type, when($0.raisedAt), when($0.clearedAt), $0.acknowledgedBy ?? "", $0.message]
        })
    }

    /// Sessions and minutes per site and day (minutes: the sum over programs).
    public static func usage(_ report: UsageReport) -> TextTable {
        TextTable(["SITE", "DAY", "STARTED", "COMPLETED", "ABORTED", "MINUTES"], report.days.map { day in
            let minutes = day.minutes["program"]?.values.reduce(0, +) ?? 0
            return [day.site, day.day, "\(day.sessions.started)", "\(day.sessions.completed)", "\(day.sessions.abortedTotal)", String(format: "%.1f", minutes)]
        })
    }

    public static func audit(_ entries: [AuditEntry]) -> TextTable {
        TextTable(["WHEN", "WHO", "ACTION", "TARGETS", "OUTCOME", "DETAIL"], entries.map {
            [when($0.at), $0.actor, $0.action, $0.targets, $0.outcome, $0.detail ?? ""]
        })
    }

    // MARK: rollouts

    public static func rollouts(_ rollouts: [Rollout]) -> TextTable {
        TextTable(["ID", "NAME", "STATE", "WAVE", "DEVICES", "CREATED"], rollouts.map {
            [$0.id, $0.name, $0.state.rawValue, "\(min($0.currentWave + 1, $0.waves.count))/\($0.waves.count)",
             $0.counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "), when($0.createdAt)]
        })
    }

    /// The lines above a rollout's device table: state, waves, device counts,
    /// and a note when the token sees only some of its sites.
    public static func rolloutHeadline(_ r: Rollout) -> [String] {
        var lines = [
            "rollout \(r.id) \"\(r.name)\": \(r.state.rawValue)\(r.reason.map { " (\($0))" } ?? ""), wave \(min(r.currentWave + 1, r.waves.count))/\(r.waves.count)",
            "waves: " + r.waves.map { "\($0.index): \($0.size) \($0.state)" }.joined(separator: ", "),
            "devices: " + r.counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "),
        ]
        if r.partial { lines.append("(only the devices at your token's sites are shown: the rollout also runs at other sites)") }
        return lines
    }

    public static func rolloutDevices(_ r: Rollout) -> TextTable {
        TextTable(["WAVE", "SITE", "DEVICE", "STATE", "VERSION", "ERROR"], r.devices.map {
            ["\($0.wave)", $0.site, $0.device, $0.state.rawValue, $0.version.map(String.init) ?? "-", $0.error ?? ""]
        })
    }
}
