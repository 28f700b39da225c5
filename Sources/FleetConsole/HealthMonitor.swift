import FleetProtocol
import Foundation
import ServiceLifecycle

/// Health: every second, the conditions of `HealthRules` (a pure function
/// of the model and now) become alerts — raised once per device and type,
/// cleared once gone for `clear_after_s` — and the devices owed a resync are
/// asked again. Only the coordinator raises, clears and asks; another
/// replica refreshes its view of the active alerts from the database (for
/// the devices' health column). Also the API's alert list and acknowledging.
final class HealthMonitor: Service, CoordinatedWork, Sendable {
    let context: ConsoleContext
    let state: FleetState
    let store: any EventLog & AlertStore
    let coordinator: Coordinator
    let commands: CommandService
    let audit: AuditTrail

    init(context: ConsoleContext, state: FleetState, store: any EventLog & AlertStore, coordinator: Coordinator, commands: CommandService, audit: AuditTrail) {
        self.context = context
        self.state = state
        self.store = store
        self.coordinator = coordinator
        self.commands = commands
        self.audit = audit
    }

    func run() async throws {
        await cancelWhenGracefulShutdown { await self.loop() }
    }

    func loop() async {
        var lastGapScan = Date.distantPast
        while !Task.isCancelled {
            try? await context.clock.sleep(for: .seconds(1))
            await tick(lastGapScan: &lastGapScan)
        }
    }

    /// One second's work.
    func tick(lastGapScan: inout Date) async {
        let now = context.clock.now()
        guard coordinator.isCoordinator else {
            if let active = try? await store.alerts(activeOnly: true, limit: 10_000), !coordinator.isCoordinator {
                state.replaceActiveAlerts(active, now: context.clock.now())
            }
            updateGauges()
            return
        }
        await evaluateHealth(now: now)
        if !context.isReplica {
            sendOwedResyncs(now: now)
        } else if now.timeIntervalSince(lastGapScan) >= context.configuration.health.resyncIntervalSeconds {
            lastGapScan = now
            await scanForGaps(now: now)
        }
    }

    /// The active alerts the previous coordinator left, so none is raised twice.
    func takeOver() async -> Bool {
        do {
            state.replaceActiveAlerts(try await store.alerts(activeOnly: true, limit: 10_000), now: context.clock.now())
            return true
        } catch {
            context.logger.error("could not load the active alerts; taking the lease up at the next renewal", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// The conditions true at `now` (HealthRules), from the model and the
    /// store's pain-signal counts.
    func conditions(now: Date) async -> [FleetModel.AlertKey: HealthRules.Condition] {
        let configuration = context.configuration
        let h = configuration.health
        let pain = (try? await store.painSignalAborts(since: now.addingTimeInterval(-h.painSignalWindowHours * 3600))) ?? []
        let (devices, storage) = state.model.withLock { ($0.devices, $0.storage) }
        let rules = HealthRules(thresholds: h, quota: configuration.deviceQuota, databaseDescription: configuration.database.description,
                                sharingDelay: context.isReplica ? 3 : 0)
        return rules.conditions(devices: devices, pain: pain, storage: storage, now: now)
    }

    func evaluateHealth(now: Date) async {
        let current = await conditions(now: now)
        let (toRaise, toClear) = state.model.withLock { $0.reconcileAlerts(current, now: now, clearAfter: context.configuration.health.clearAfterSeconds) }
        for (key, condition) in toRaise {
            do {
                let id = try await store.insertAlert(site: key.site, device: key.device, type: key.type, severity: condition.severity, message: condition.message, at: now)
                state.model.withLock { $0.activeAlerts[key] = .init(id: id, severity: condition.severity, message: condition.message, lastSeen: now) }
                context.logger.notice("alert raised", metadata: ["alert.type": "\(key.type)", "site": "\(key.site)", "device": "\(key.device ?? "-")", "message": "\(condition.message)"])
            } catch {
                context.logger.error("could not store an alert", metadata: ["error": "\(error)"])
            }
        }
        for id in toClear {
            try? await store.clearAlert(id: id, at: now)
        }
        updateGauges()
    }

    /// The device and alert gauges of /metrics, from the model.
    func updateGauges() {
        let metrics = context.metrics
        let (devices, alerts) = state.model.withLock { ($0.devices, $0.activeAlerts.count) }
        metrics.alertsActive.set(Double(alerts))
        var counts: [String: [DeviceState: Int]] = [:]
        let configured = Set(context.configuration.sites.map(\.id))
        for site in configured { counts[site] = [:] }
        for (a, r) in devices { counts[metrics.siteLabel(a.site.rawValue, configured: configured), default: [:]][r.state, default: 0] += 1 }
        for (site, byState) in counts {
            metrics.setDevices(site: site, counts: DeviceState.allCases.map { ($0.rawValue, byState[$0] ?? 0) })
        }
    }

    /// Asks the devices owed a `resync` (a gap seen within
    /// `health.resync_interval_s` of the last one), and those whose missing
    /// events have not all arrived since the last one (a resync command lost
    /// with the broker), once they may be asked again — at most
    /// `FleetModel.maxResyncAttempts` times while holes stay open.
    func sendOwedResyncs(now: Date) {
        let (due, givenUp) = state.model.withLock { $0.takeOwedResyncs(now: now, interval: context.configuration.health.resyncIntervalSeconds) }
        for address in due {
            context.logger.notice("events still missing since the last resync: asking the device again", metadata: ["device": "\(address)"])
            commands.requestResync(address)
        }
        for address in givenUp {
            context.logger.warning("events still missing after \(FleetModel.maxResyncAttempts) resyncs; the device no longer holds them", metadata: ["device": "\(address)"])
        }
    }

    /// The coordinator's gap check for replicas, which each see only their
    /// share of the events: holes in the event table (events of the last
    /// hour's epochs) still there at the next look, `health.resync_interval_s`
    /// later, are asked for — at most `FleetModel.maxResyncAttempts` times
    /// while they stay open. A hole seen once may be an event another
    /// replica has not committed yet.
    func scanForGaps(now: Date) async {
        guard let found = try? await store.missingEvents(within: 3600, limit: FleetModel.maxHolesPerDevice, now: now) else { return }
        let due = state.model.withLock { m -> [DeviceAddress] in
            var due: [DeviceAddress] = []
            for (address, keys) in found {
                let holes = Set(keys)
                let before = m.holes[address] ?? []
                m.holes[address] = holes
                if !holes.isDisjoint(with: before), m.resyncAttempts[address, default: 0] < FleetModel.maxResyncAttempts {
                    m.resyncAttempts[address, default: 0] += 1
                    m.devices[address]?.lastResyncRequest = now
                    due.append(address)
                }
            }
            for address in m.holes.keys where found[address] == nil {
                m.holes[address] = nil
                m.resyncAttempts[address] = nil
            }
            return due
        }
        for address in due {
            context.logger.notice("events missing from the event table: asking the device to resync", metadata: ["device": "\(address)"])
            commands.requestResync(address)
        }
    }

    // MARK: The API's alerts

    func alerts(for principal: Principal, activeOnly: Bool) async throws(ConsoleError) -> [AlertRecord] {
        do { return try await store.alerts(activeOnly: activeOnly, limit: 500).filter { principal.canSee(site: $0.site) } } catch {
            throw .unavailable("alerts cannot be read: \(error)")
        }
    }

    func acknowledgeAlert(id: Int64, by principal: Principal) async throws(ConsoleError) -> AlertRecord {
        try principal.require(.operator, for: "acknowledging alerts")
        let existing = try await alerts(for: principal, activeOnly: false).first { $0.id == id }
        guard existing != nil else { throw .notFound("alert \(id) not found") }
        do {
            guard let alert = try await store.acknowledgeAlert(id: id, by: principal.name, at: context.clock.now()) else { throw ConsoleError.notFound("alert \(id) not found") }
            await audit.record(principal, "alert.ack", targets: "\(alert.site)/\(alert.device ?? "*")", outcome: "ok", detail: "alert \(id) \(alert.type)")
            return alert
        } catch let e as ConsoleError { throw e } catch {
            throw .unavailable("the alert could not be updated: \(error)")
        }
    }
}
