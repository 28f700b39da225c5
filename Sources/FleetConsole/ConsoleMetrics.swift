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
    let lag: Gauge
    let alertsActive: Gauge
    let coordinator: Gauge
    private let abortCounters = Mutex<[String: Counter]>([:])
    private let deviceGauges = Mutex<[String: Gauge]>([:])

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
        resyncs = registry.makeCounter(descriptor: Self.d("resync_requests", "total", "resync commands sent after an event gap"))
        lag = registry.makeGauge(descriptor: Self.d("ingest_lag", "seconds", "Age of the last live message when it was ingested"))
        alertsActive = registry.makeGauge(descriptor: Self.d("alerts", "active", "Alerts not yet cleared"))
        coordinator = registry.makeGauge(descriptor: Self.d("coordinator", "", "1 while this console does the once-only work (a replica holding the lease)"))
    }

    func aborted(_ reason: String) {
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
