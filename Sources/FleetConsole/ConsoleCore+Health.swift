import FleetProtocol
import Foundation

extension ConsoleCore {
    /// Every second: evaluate every condition, raise new alerts (one per
    /// device and type), clear those whose condition has been gone for
    /// `clear_after_s` (hysteresis), refresh the device gauges.
    /// Only the coordinator raises and clears alerts and asks for resyncs;
    /// another replica refreshes its view of the active alerts from the
    /// database instead (for the devices' health column).
    func healthLoop() async {
        var lastGapScan = Date.distantPast
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            let now = Date()
            guard isCoordinator else {
                if let active = try? await store.alerts(activeOnly: true, limit: 10_000), !isCoordinator { replaceActiveAlerts(active) }
                updateGauges()
                continue
            }
            await evaluateHealth(now: now)
            if !isReplica {
                sendOwedResyncs(now: now)
            } else if now.timeIntervalSince(lastGapScan) >= configuration.health.resyncIntervalSeconds {
                lastGapScan = now
                await scanForGaps(now: now)
            }
        }
    }

    /// `20`, `0.5`: a setting as written, without a trailing `.0`.
    static func plain(_ value: Double) -> String {
        value.rounded() == value && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    struct Condition {
        var severity: Health
        var message: String
    }

    func conditions(now: Date) async -> [FleetModel.AlertKey: Condition] {
        let h = configuration.health
        let pain = (try? await store.painSignalAborts(since: now.addingTimeInterval(-h.painSignalWindowHours * 3600))) ?? []
        let devices = model.withLock { $0.devices }
        // A replica learns of telemetry another replica received through the
        // device rows, up to ~3 s later (rows written and read every second).
        let sharingDelay = isReplica ? 3.0 : 0
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
                let q = configuration.deviceQuota
                raise("quota_exceeded", .warning, "\(address) sent more than its ingest quota (\(Self.plain(q.messagesPerSecond)) messages, \(Self.plain(q.bytesPerSecond)) bytes a second); \(r.quotaDrops ?? 1) message(s) dropped in all, the last at \(RFC3339.string(from: at))")
            }
            if let at = r.sequenceFaultAt, now.timeIntervalSince(at) < FleetModel.sequenceFaultAlertSeconds {
                raise("sequence_fault", .warning, "\(address) sent \(r.sequenceFaults ?? 1) event(s) with an implausible seq, refused; the last: \(r.sequenceFaultDetail ?? "?")")
            }
        }
        if let free = model.withLock({ $0.storage?.freeBytes }), Double(free) < h.diskFreeMinMiB * 1_048_576 {
            out[.init(site: FleetModel.consoleSite, device: nil, type: "disk_space")] = Condition(
                severity: .critical,
                message: "\(free / 1_048_576) MiB free beside the database \(configuration.database.description) (alert below \(Self.plain(h.diskFreeMinMiB)) MiB): ingest stops when the disk is full; shorten retention or add space")
        }
        for p in pain where p.count >= h.painSignalCount {
            out[.init(site: p.site, device: nil, type: "pain_signals")] = Condition(
                severity: .warning,
                message: "\(p.count) sessions of \(p.program) at \(p.site) ended with a pain signal in \(Int(h.painSignalWindowHours)) h: its intensity may be too high")
        }
        return out
    }

    func evaluateHealth(now: Date) async {
        let current = await conditions(now: now)
        let clearAfter = configuration.health.clearAfterSeconds
        var toRaise: [(FleetModel.AlertKey, Condition)] = []
        var toClear: [Int64] = []
        model.withLock { m in
            for (key, condition) in current {
                if var active = m.activeAlerts[key] {
                    active.lastSeen = now
                    m.activeAlerts[key] = active
                } else {
                    toRaise.append((key, condition))
                }
            }
            for (key, active) in m.activeAlerts where current[key] == nil && now.timeIntervalSince(active.lastSeen) >= clearAfter {
                toClear.append(active.id)
                m.activeAlerts[key] = nil
            }
        }
        for (key, condition) in toRaise {
            do {
                let id = try await store.insertAlert(site: key.site, device: key.device, type: key.type, severity: condition.severity, message: condition.message, at: now)
                model.withLock { $0.activeAlerts[key] = .init(id: id, severity: condition.severity, message: condition.message, lastSeen: now) }
                logger.notice("alert raised", metadata: ["alert.type": "\(key.type)", "site": "\(key.site)", "device": "\(key.device ?? "-")", "message": "\(condition.message)"])
            } catch {
                logger.error("could not store an alert", metadata: ["error": "\(error)"])
            }
        }
        for id in toClear {
            try? await store.clearAlert(id: id, at: now)
        }
        updateGauges()
    }

    /// The device and alert gauges of /metrics, from the model.
    func updateGauges() {
        let (devices, alerts) = model.withLock { ($0.devices, $0.activeAlerts.count) }
        metrics.alertsActive.set(Double(alerts))
        var counts: [String: [DeviceState: Int]] = [:]
        let configured = Set(configuration.sites.map(\.id))
        for site in configured { counts[site] = [:] }
        for (a, r) in devices { counts[metrics.siteLabel(a.site.rawValue, configured: configured), default: [:]][r.state, default: 0] += 1 }
        for (site, byState) in counts {
            metrics.setDevices(site: site, counts: DeviceState.allCases.map { ($0.rawValue, byState[$0] ?? 0) })
        }
    }

    public func alerts(for principal: Principal, activeOnly: Bool) async throws(ConsoleError) -> [AlertRecord] {
        do { return try await store.alerts(activeOnly: activeOnly, limit: 500).filter { principal.canSee(site: $0.site) } } catch {
            throw .unavailable("alerts cannot be read: \(error)")
        }
    }

    public func acknowledgeAlert(id: Int64, by principal: Principal) async throws(ConsoleError) -> AlertRecord {
        try require(.operator, principal, for: "acknowledging alerts")
        let existing = try await alerts(for: principal, activeOnly: false).first { $0.id == id }
        guard existing != nil else { throw .notFound("alert \(id) not found") }
        do {
            guard let alert = try await store.acknowledgeAlert(id: id, by: principal.name, at: Date()) else { throw ConsoleError.notFound("alert \(id) not found") }
            await audit(principal, "alert.ack", targets: "\(alert.site)/\(alert.device ?? "*")", outcome: "ok", detail: "alert \(id) \(alert.type)")
            return alert
        } catch let e as ConsoleError { throw e } catch {
            throw .unavailable("the alert could not be updated: \(error)")
        }
    }
}
