import FleetProtocol
import Foundation

/// The API's and the dashboard's questions about the fleet: devices, one
/// device, sites, usage, programs. Read from a copy of the model taken
/// under its lock (ingest never waits for a query) and from the store.
struct FleetQueries: Sendable {
    let context: ConsoleContext
    let state: FleetState
    let store: any EventLog & AlertStore

    /// Active alerts by device, so a fleet's summaries cost one pass over
    /// the alerts, not one per device.
    struct AlertIndex {
        var byDevice: [String: [(type: String, severity: Health)]] = [:]

        init(_ alerts: [FleetModel.AlertKey: FleetModel.ActiveAlert]) {
            for (key, alert) in alerts {
                guard let device = key.device else { continue }
                byDevice["\(key.site)/\(device)", default: []].append((key.type, alert.severity))
            }
        }

        func of(_ r: DeviceRecord) -> [(type: String, severity: Health)] { byDevice["\(r.site)/\(r.device)"] ?? [] }
    }

    func summary(_ r: DeviceRecord, alerts: AlertIndex) -> DeviceSummary {
        let mine = alerts.of(r)
        let health = mine.map(\.severity).max() ?? .ok
        return DeviceSummary(site: r.site, device: r.device, online: r.online, state: r.state, session: r.session, health: health,
                             alerts: mine.map(\.type).sorted(), epoch: r.epoch, lastSeen: r.lastSeen, agentVersion: r.agentVersion,
                             config: r.configVersions, forgottenAt: r.forgottenAt, revokedAt: r.revokedAt)
    }

    func devices(for principal: Principal, site: String? = nil, state: DeviceState? = nil, health: Health? = nil) throws(ConsoleError) -> [DeviceSummary] {
        if let site, !principal.canSee(site: site) { throw .forbidden("token '\(principal.name)' may not see site \"\(site)\"") }
        let (devices, active) = self.state.model.withLock { ($0.devices, $0.activeAlerts) }
        let alerts = AlertIndex(active) // outside the lock: ingest never waits for a query
        return devices.values
            .filter { principal.canSee(site: $0.site) && (site == nil || $0.site == site) }
            .map { summary($0, alerts: alerts) }
            .filter { (state == nil || $0.state == state) && (health == nil || $0.health == health) }
            .sorted { ($0.site, $0.device) < ($1.site, $1.device) }
    }

    func device(site: String, device: String, for principal: Principal) async throws(ConsoleError) -> DeviceDetail {
        guard principal.canSee(site: site) else { throw .forbidden("token '\(principal.name)' may not see site \"\(site)\"") }
        guard let address = try? DeviceAddress(site: site, device: device) else { throw .badRequest("\"\(site)/\(device)\" is not a valid site/device address") }
        let (record, active) = state.model.withLock { ($0.devices[address], $0.activeAlerts) }
        let alerts = AlertIndex(active)
        guard let record else { throw .notFound("device \(address) is not known to this console") }
        let sessions = (try? await store.sessions(site: site, device: device, limit: 20)) ?? []
        let deviceAlerts = ((try? await store.alerts(activeOnly: false, limit: 200)) ?? []).filter { $0.site == site && $0.device == device }
        return DeviceDetail(summary: summary(record, alerts: alerts), programs: record.programs, telemetry: record.telemetry, telemetryAt: record.telemetryAt,
                            recentSessions: sessions, alerts: Array(deviceAlerts.prefix(20)), usage: record.usage,
                            desiredConfig: record.desired, reportedConfig: record.reported)
    }

    /// The programs the devices of each site `principal` may see can run,
    /// by site (the overview's start forms).
    func programsBySite(for principal: Principal) -> [String: [String]] {
        let devices = state.model.withLock { $0.devices }
        var out: [String: Set<String>] = [:]
        for (address, record) in devices where principal.canSee(site: address.site.rawValue) {
            out[address.site.rawValue, default: []].formUnion(record.programs)
        }
        return out.mapValues { $0.sorted() }
    }

    func sites(for principal: Principal) async -> [SiteSummary] {
        let (devices, active) = state.model.withLock { ($0.devices, $0.activeAlerts) }
        let alerts = AlertIndex(active) // outside the lock: ingest never waits for a query
        var ids = Set(context.configuration.sites.map(\.id))
        for a in devices.keys { ids.insert(a.site.rawValue) }
        var out: [SiteSummary] = []
        for id in ids.filter({ principal.canSee(site: $0) }).sorted() {
            let site = context.configuration.site(id)
            let mine = devices.filter { $0.key.site.rawValue == id }.map { summary($0.value, alerts: alerts) }
            let zone = context.configuration.timeZone(ofSite: id)
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = zone
            let today = calendar.startOfDay(for: context.clock.now())
            let online = mine.filter(\.online).count
            let inSession = mine.filter { $0.state == .inSession }.count
            let sessionsToday = (try? await store.sessionsStarted(site: id, since: today)) ?? 0
            out.append(SiteSummary(site: id, name: site?.name ?? id, timezone: zone.identifier, devices: mine.count, online: online,
                               inSession: inSession, idle: mine.filter { $0.state == .idle }.count,
                               offline: mine.filter { $0.state == .offline }.count, faulted: mine.filter { $0.state == .faulted }.count,
                               revoked: mine.filter { $0.state == .revoked }.count,
                               activeAlerts: active.keys.filter { $0.site == id }.count,
                               sessionsToday: sessionsToday,
                               utilisation: online == 0 ? 0 : Double(inSession) / Double(online)))
        }
        return out
    }

    /// Usage per site and day (site time zone) and cumulative totals per site.
    func usage(for principal: Principal, site: String? = nil, from: String? = nil, to: String? = nil) throws(ConsoleError) -> UsageReport {
        if let site, !principal.canSee(site: site) { throw .forbidden("token '\(principal.name)' may not see site \"\(site)\"") }
        for (name, value) in [("from", from), ("to", to)] {
            guard let value else { continue }
            let parts = value.split(separator: "-").compactMap { Int($0) }
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = TimeZone(identifier: "UTC")!
            let valid = value.range(of: #"^\d{4}-\d{2}-\d{2}$"#, options: .regularExpression) != nil && parts.count == 3
                && calendar.date(from: DateComponents(year: parts[0], month: parts[1], day: parts[2])).map { calendar.dateComponents([.month, .day], from: $0) == DateComponents(month: parts[1], day: parts[2]) } == true
            if !valid { throw .badRequest("\(name): expected a day as YYYY-MM-DD, got \"\(value)\"") }
        }
        let (days, usage) = state.model.withLock { ($0.usageDays, $0.usage) }
        let visible = { (s: String) in principal.canSee(site: s) && (site == nil || s == site) }
        let selected = days.values.filter { visible($0.site) && (from == nil || $0.day >= from!) && (to == nil || $0.day <= to!) }
            .sorted { ($0.site, $0.day) < ($1.site, $1.day) }
        var totals: [String: Usage] = [:]
        for (address, u) in usage where visible(address.site.rawValue) {
            totals[address.site.rawValue] = (totals[address.site.rawValue] ?? Usage()).adding(u.total)
        }
        return UsageReport(days: selected, totals: totals)
    }

}
