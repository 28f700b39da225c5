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
            try? await clock.sleep(for: .seconds(1))
            let now = clock.now()
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

    /// The conditions true at `now` (HealthRules), from the model and the
    /// store's pain-signal counts.
    func conditions(now: Date) async -> [FleetModel.AlertKey: HealthRules.Condition] {
        let h = configuration.health
        let pain = (try? await store.painSignalAborts(since: now.addingTimeInterval(-h.painSignalWindowHours * 3600))) ?? []
        let (devices, storage) = model.withLock { ($0.devices, $0.storage) }
        let rules = HealthRules(thresholds: h, quota: configuration.deviceQuota, databaseDescription: configuration.database.description,
                                sharingDelay: isReplica ? 3 : 0)
        return rules.conditions(devices: devices, pain: pain, storage: storage, now: now)
    }

    func evaluateHealth(now: Date) async {
        let current = await conditions(now: now)
        let (toRaise, toClear) = model.withLock { $0.reconcileAlerts(current, now: now, clearAfter: configuration.health.clearAfterSeconds) }
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
            guard let alert = try await store.acknowledgeAlert(id: id, by: principal.name, at: clock.now()) else { throw ConsoleError.notFound("alert \(id) not found") }
            await audit(principal, "alert.ack", targets: "\(alert.site)/\(alert.device ?? "*")", outcome: "ok", detail: "alert \(id) \(alert.type)")
            return alert
        } catch let e as ConsoleError { throw e } catch {
            throw .unavailable("the alert could not be updated: \(error)")
        }
    }
}
