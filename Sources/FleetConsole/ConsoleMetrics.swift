import FleetProtocol
import Prometheus
import Synchronization

/// The console's Prometheus metrics (`GET /metrics`).
final class ConsoleMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let ingested: Counter
    let malformed: Counter
    let eventsStored: Counter
    let eventsDuplicate: Counter
    let sessionsStarted: Counter
    let resyncs: Counter
    let sequenceFaults: Counter
    let revokedIgnored: Counter
    let quotaDropped: Counter
    let prunedEvents: Counter
    let prunedSessions: Counter
    let prunedAlerts: Counter
    let databaseBytes: Gauge
    let diskFreeBytes: Gauge
    let lag: Gauge
    let alertsActive: Gauge
    let coordinator: Gauge
    private let abortCounters = Mutex<[String: Counter]>([:])
    private let deviceGauges = Mutex<[String: Gauge]>([:])
    /// Sites that are not in the configuration but have their own
    /// `fleet_devices` label (at most `maxUnconfiguredSiteLabels`).
    private let unconfiguredSites = Mutex<Set<String>>([])

    /// Label values of device-chosen strings are bounded: an abort reason
    /// the contract does not define is `other`, and sites beyond the
    /// configured ones and this many others share the label `_other` (no
    /// site id starts with `_`). Every series stays one a scrape can hold.
    static let maxUnconfiguredSiteLabels = 100
    static let otherReason = "other"
    static let otherSite = "_other"

    /// `fleet_<name>_<unit>` with its help text.
    private static func d(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "fleet", metricName: name, unitName: unit, helpText: help)
    }

    init() {
        ingested = registry.makeCounter(descriptor: Self.d("ingest_messages", "total", "Messages received under the topic root"))
        malformed = registry.makeCounter(descriptor: Self.d("ingest_malformed", "total", "Messages ignored: unknown topic, not the contract's JSON"))
        eventsStored = registry.makeCounter(descriptor: Self.d("events_stored", "total", "Events stored (each (device, epoch, seq) once)"))
        eventsDuplicate = registry.makeCounter(descriptor: Self.d("events_duplicate", "total", "Events received again and not stored twice"))
        sessionsStarted = registry.makeCounter(descriptor: Self.d("sessions", "total", "Sessions started"))
        resyncs = registry.makeCounter(descriptor: Self.d("resync_requests", "total", "resync commands sent after an event gap or a new epoch"))
        sequenceFaults = registry.makeCounter(descriptor: Self.d("ingest_sequence_faults", "total", "Events refused for an implausible jump of their seq (a device fault)"))
        quotaDropped = registry.makeCounter(descriptor: Self.d("ingest_quota_dropped", "total", "Messages dropped because their device sent more than its ingest quota"))
        revokedIgnored = registry.makeCounter(descriptor: Self.d("ingest_revoked_ignored", "total", "Retained messages of forgotten (revoked) devices, ignored"))
        let pruned = Self.d("retention_deleted", "total", "Rows deleted by retention, by table")
        prunedEvents = registry.makeCounter(descriptor: pruned, labels: [("table", "event")])
        prunedSessions = registry.makeCounter(descriptor: pruned, labels: [("table", "session")])
        prunedAlerts = registry.makeCounter(descriptor: pruned, labels: [("table", "alert")])
        databaseBytes = registry.makeGauge(descriptor: Self.d("database_size", "bytes", "The console's database on disk"))
        diskFreeBytes = registry.makeGauge(descriptor: Self.d("database_disk_free", "bytes", "Free space on the database's file system (SQLite; -1 when the console cannot see it)"))
        lag = registry.makeGauge(descriptor: Self.d("ingest_lag", "seconds", "Age of the last live message when it was ingested"))
        alertsActive = registry.makeGauge(descriptor: Self.d("alerts", "active", "Alerts not yet cleared"))
        coordinator = registry.makeGauge(descriptor: Self.d("coordinator", "", "1 while this console does the once-only work (a replica holding the lease)"))
    }

    /// The label value of an abort reason: the reason when the contract
    /// defines it, `other` for anything a device made up.
    static func reasonLabel(_ reason: String) -> String {
        SessionAbortReason(rawValue: reason).isKnown ? reason : otherReason
    }

    /// The label value of `site`: itself when configured or among the first
    /// `maxUnconfiguredSiteLabels` others seen, else `_other`.
    func siteLabel(_ site: String, configured: Set<String>) -> String {
        if configured.contains(site) { return site }
        return unconfiguredSites.withLock { known in
            if known.contains(site) { return site }
            guard known.count < Self.maxUnconfiguredSiteLabels, Identifier.isValid(site) else { return Self.otherSite }
            known.insert(site)
            return site
        }
    }

    func aborted(_ reason: String) {
        let reason = Self.reasonLabel(reason)
        let counter = abortCounters.withLock { c in
            if let existing = c[reason] { return existing }
            let made = registry.makeCounter(descriptor: Self.d("session_aborts", "total", "Sessions aborted, by reason"), labels: [("reason", reason)])
            c[reason] = made
            return made
        }
        counter.increment()
    }

    /// Sets the `fleet_devices` gauges of one site, one per state in
    /// `counts`. A site's gauges are all registered before any is set, so a
    /// scrape never sees some of a site's states and not the others.
    func setDevices(site: String, counts: [(state: String, count: Int)]) {
        let gauges = deviceGauges.withLock { g in
            counts.map { entry in
                let key = "\(site)|\(entry.state)"
                if let existing = g[key] { return existing }
                let made = registry.makeGauge(
                    descriptor: Self.d("devices", "", "Devices by site and state"), labels: [("site", site), ("state", entry.state)])
                g[key] = made
                return made
            }
        }
        for (gauge, entry) in zip(gauges, counts) { gauge.set(Double(entry.count)) }
    }

    func text() -> String { registry.emitToString() }
}
