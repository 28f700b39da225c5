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
        struct Device: Hashable {
            var site: String
            var device: String
        }
        var byDevice: [Device: [(type: String, severity: Health)]] = [:]

        init(_ alerts: [FleetModel.AlertKey: FleetModel.ActiveAlert]) {
            for (key, alert) in alerts {
                guard let device = key.device else { continue }
                byDevice[Device(site: key.site, device: device), default: []].append((key.type, alert.severity))
            }
        }

        func of(_ r: DeviceRecord) -> [(type: String, severity: Health)] { byDevice[Device(site: r.site, device: r.device)] ?? [] }
        func health(of r: DeviceRecord) -> Health { of(r).map(\.severity).max() ?? .ok }
    }

    func summary(_ r: DeviceRecord, alerts: AlertIndex) -> DeviceSummary {
        let mine = alerts.of(r)
        let health = mine.map(\.severity).max() ?? .ok
        return DeviceSummary(site: r.site, device: r.device, online: r.online, state: r.state, session: r.session, health: health,
                             alerts: mine.map(\.type).sorted(), epoch: r.epoch, lastSeen: r.lastSeen, agentVersion: r.agentVersion,
                             config: r.configVersions, forgottenAt: r.forgottenAt, revokedAt: r.revokedAt)
    }

    /// A device as the list filters and sorts it, before it is summarised.
    private struct Listed: DeviceListRow {
        let address: DeviceAddress
        let site: String
        let device: String
        let state: DeviceState
        let health: Health
        let program: String?
        let lastSeen: Date?
    }

    /// The device list (`GET /api/v1/devices`, the dashboard's `/devices`):
    /// filtered, sorted and paged, and only the page's devices summarised.
    /// At 10,000 devices a page of 50 cost almost as much as the whole list
    /// when every device was summarised first (issue 23).
    func deviceList(for principal: Principal, query q: DeviceListQuery) throws(ConsoleError) -> DeviceListQuery.Page<DeviceSummary> {
        if let site = q.site, !principal.canSee(site: site) { throw .forbidden("token '\(principal.name)' may not see site \"\(site)\"") }
        let (devices, active) = state.model.withLock { ($0.devices, $0.activeAlerts) }
        let alerts = AlertIndex(active) // outside the lock: ingest never waits for a query
        var rows: [Listed] = []
        rows.reserveCapacity(devices.count)
        for (address, r) in devices where (q.site == nil || r.site == q.site) && principal.canSee(site: r.site) {
            let state = r.state
            if let wanted = q.state, wanted != state { continue }
            let health = alerts.health(of: r)
            if let wanted = q.health, wanted != health { continue }
            rows.append(Listed(address: address, site: r.site, device: r.device, state: state, health: health, program: r.session?.program, lastSeen: r.lastSeen))
        }
        // Every row was read from `devices`, the same snapshot: its record is there.
        return q.page(of: rows).map { summary(devices[$0.address]!, alerts: alerts) }
    }

    /// Every device matching the filters, by site then device.
    func devices(for principal: Principal, site: String? = nil, state: DeviceState? = nil, health: Health? = nil) throws(ConsoleError) -> [DeviceSummary] {
        try deviceList(for: principal, query: DeviceListQuery(site: site, state: state, health: health)).devices
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

    /// The sites `principal` may see: the configured ones and any a device
    /// reports from, sorted (the dashboard's filters).
    func siteIDs(for principal: Principal) -> [String] {
        let devices = state.model.withLock { $0.devices }
        var ids = Set(context.configuration.sites.map(\.id))
        for a in devices.keys { ids.insert(a.site.rawValue) }
        return ids.filter { principal.canSee(site: $0) }.sorted()
    }

    /// Each site's counts, from one pass over the devices and one over the
    /// alerts (not one filter of the whole fleet per site).
    func sites(for principal: Principal) async -> [SiteSummary] {
        struct Counts {
            var devices = 0, online = 0, inSession = 0, idle = 0, offline = 0, faulted = 0, revoked = 0, alerts = 0
        }
        let (devices, active) = state.model.withLock { ($0.devices, $0.activeAlerts) }
        var counts: [String: Counts] = [:]
        for site in context.configuration.sites.map(\.id) { counts[site] = Counts() }
        for r in devices.values {
            var c = counts[r.site] ?? Counts()
            c.devices += 1
            if r.online { c.online += 1 }
            switch r.state {
            case .inSession: c.inSession += 1
            case .idle: c.idle += 1
            case .offline: c.offline += 1
            case .faulted: c.faulted += 1
            case .revoked: c.revoked += 1
            }
            counts[r.site] = c
        }
        for key in active.keys where counts[key.site] != nil { counts[key.site]!.alerts += 1 }
        var out: [SiteSummary] = []
        for (id, c) in counts.filter({ principal.canSee(site: $0.key) }).sorted(by: { $0.key < $1.key }) {
            let site = context.configuration.site(id)
            let zone = context.configuration.timeZone(ofSite: id)
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = zone
            let today = calendar.startOfDay(for: context.clock.now())
            let sessionsToday = (try? await store.sessionsStarted(site: id, since: today)) ?? 0
            out.append(SiteSummary(site: id, name: site?.name ?? id, timezone: zone.identifier, devices: c.devices, online: c.online,
                                   inSession: c.inSession, idle: c.idle, offline: c.offline, faulted: c.faulted, revoked: c.revoked,
                                   activeAlerts: c.alerts, sessionsToday: sessionsToday,
                                   utilisation: c.online == 0 ? 0 : Double(c.inSession) / Double(c.online)))
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
