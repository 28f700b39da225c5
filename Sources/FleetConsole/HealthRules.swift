import FleetProtocol
import Foundation

/// The console's health rules: which alerts the fleet calls for at a given
/// time, and how the active alerts follow them. Pure — the model, the
/// thresholds and `now` in, conditions and alert changes out — so every
/// rule is tested on a manual clock (HealthRulesTests); `HealthMonitor`'s
/// health loop gathers the inputs and performs the changes.
struct HealthRules: Sendable {
    var thresholds: HealthThresholds
    var quota: DeviceQuota
    /// Where the database is, for the `disk_space` message.
    var databaseDescription: String
    /// Extra seconds before a device is stale: a replica learns of telemetry
    /// another replica received through the device rows, up to ~3 s later.
    var sharingDelay: TimeInterval = 0

    struct Condition: Equatable {
        var severity: Health
        var message: String
    }

    /// Every alert condition true at `now`, one per (site, device, type).
    /// `pain` are the pain-signal aborts within the window, by site and
    /// program; `storage` the database's last measure.
    func conditions(devices: [DeviceAddress: DeviceRecord], pain: [PainSignalCount], storage: StorageStatus?, now: Date) -> [FleetModel.AlertKey: Condition] {
        let h = thresholds
        var out: [FleetModel.AlertKey: Condition] = [:]
        // A revoked device raises nothing: it is gone, not offline (item 18).
        for (address, r) in devices where r.revokedAt == nil {
            func raise(_ type: String, _ severity: Health, _ message: String) {
                out[.init(site: address.site.rawValue, device: address.device.rawValue, type: type)] = Condition(severity: severity, message: message)
            }
            if !r.online {
                let why = r.offlineReason == "shutdown" ? "shut down" : "connection lost"
                raise("offline", r.offlineReason == "shutdown" ? .warning : .critical, "\(address) is offline (\(why))")
            } else if let at = r.telemetryAt, let interval = r.telemetry?.intervalSeconds, now.timeIntervalSince(at) > interval * h.staleFactor + sharingDelay {
                raise("stale", .warning, "no telemetry from \(address) for \(Int(now.timeIntervalSince(at))) s (interval \(interval) s)")
            }
            if r.online, let faults = r.telemetry?.faults, !faults.isEmpty {
                raise("fault", .critical, "\(address) reports \(faults.joined(separator: ", "))")
            }
            if r.online, r.telemetry?.sessionState == .cooldown || (r.telemetry?.faults.contains("overheat") ?? false) {
                raise("overheat", .warning, "\(address) is locked out until its motor cools down")
            }
            if r.configDiffers, let since = r.desiredSince, now.timeIntervalSince(since) > h.configDriftSeconds {
                raise("config_drift", .warning, "\(address) runs config \(r.reported?.appliedVersion.map(String.init) ?? "none"), desired \(r.desired?.version ?? 0), for \(Int(now.timeIntervalSince(since))) s")
            }
            // The counter only grows: the alert follows its growth within the window, so it clears.
            if let grew = r.outboxDropsGrewAt, now.timeIntervalSince(grew) < h.outboxDropWindowSeconds {
                raise("outbox_drops", .warning, "\(address) dropped undelivered messages from its outbox in the last \(Int(h.outboxDropWindowSeconds)) s (\(r.usage?.outboxDropped ?? 0) in all)")
            }
            if let at = r.quotaExceededAt, now.timeIntervalSince(at) < FleetModel.quotaAlertSeconds {
                raise("quota_exceeded", .warning, "\(address) sent more than its ingest quota (\(Self.plain(quota.messagesPerSecond)) messages, \(Self.plain(quota.bytesPerSecond)) bytes a second); \(r.quotaDrops ?? 1) message(s) dropped in all, the last at \(RFC3339.string(from: at))")
            }
            if let at = r.sequenceFaultAt, now.timeIntervalSince(at) < FleetModel.sequenceFaultAlertSeconds {
                raise("sequence_fault", .warning, "\(address) sent \(r.sequenceFaults ?? 1) event(s) with an implausible seq, refused; the last: \(r.sequenceFaultDetail ?? "?")")
            }
        }
        if let free = storage?.freeBytes, Double(free) < h.diskFreeMinMiB * 1_048_576 {
            out[.init(site: FleetModel.consoleSite, device: nil, type: "disk_space")] = Condition(
                severity: .critical,
                message: "\(free / 1_048_576) MiB free beside the database \(databaseDescription) (alert below \(Self.plain(h.diskFreeMinMiB)) MiB): ingest stops when the disk is full; shorten retention or add space")
        }
        for p in pain where p.count >= h.painSignalCount {
            out[.init(site: p.site, device: nil, type: "pain_signals")] = Condition(
                severity: .warning,
                message: "\(p.count) sessions of \(p.program) at \(p.site) ended with a pain signal in \(Int(h.painSignalWindowHours)) h: its intensity may be too high")
        }
        return out
    }

    /// `20`, `0.5`: a setting as written, without a trailing `.0`.
    static func plain(_ value: Double) -> String {
        value.rounded() == value && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}

extension FleetModel {
    /// Brings the active alerts in line with `current`: conditions not yet
    /// alerted are returned to raise (the caller stores them and calls
    /// `alertRaised`); alerts whose condition has been gone for
    /// `clearAfter` seconds (hysteresis) are removed and their ids returned
    /// to clear. An alert still called for is marked seen at `now`.
    mutating func reconcileAlerts(_ current: [AlertKey: HealthRules.Condition], now: Date, clearAfter: TimeInterval)
        -> (raise: [(AlertKey, HealthRules.Condition)], clear: [Int64])
    {
        var raise: [(AlertKey, HealthRules.Condition)] = []
        for (key, condition) in current {
            if activeAlerts[key] != nil { activeAlerts[key]?.lastSeen = now } else { raise.append((key, condition)) }
        }
        var clear: [Int64] = []
        for (key, active) in activeAlerts where current[key] == nil && now.timeIntervalSince(active.lastSeen) >= clearAfter {
            clear.append(active.id)
            activeAlerts[key] = nil
        }
        return (raise, clear)
    }
}
