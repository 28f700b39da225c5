import ArgumentParser
import FleetTestSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

// MARK: load

/// Issue 9's load figures: N simulated massagers with 1 s telemetry; while
/// they run, the console's ingest lag and the API's and dashboard's
/// response times are sampled once a second, with CPU and RSS of broker,
/// simulator and console over the same window.
struct LoadBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "load", abstract: "N devices at 1 s telemetry: ingest lag, API and dashboard p95, CPU and RSS of broker, simulator, console.")
    @OptionGroup var fleet: SimulatedFleet
    var devices: Int { fleet.devices }
    var thin: Bool { fleet.thin }
    var processes: Int { fleet.processes }
    @Option(name: .customLong("telemetry-interval"), help: "Seconds between telemetry messages of each massager.") var telemetryInterval = 1.0
    @Option(help: "Seconds to measure over.") var window = 60
    @Option(name: .customLong("sessions-per-hour"), help: "Sessions each massager starts per simulated hour (at --speed 60).") var sessionsPerHour = 6.0

    func run() async throws {
        let scenario = try await FleetScenario(brokerConfig: "set_tcp_nodelay true\nmax_queued_messages 0\n")
        defer { scenario.stop() }
        let sims = try scenario.startSimulators(devices: devices, processes: processes, thin: thin, extraArguments: [
            "--speed", "60", "--sessions-per-hour", "\(sessionsPerHour)", "--telemetry-interval", "\(telemetryInterval)", "--summary-every", "10"])
        defer { for sim in sims { sim.kill() } }
        let kind = thin ? "thin devices" : "agents"
        let online = try await scenario.waitForDevicesOnline(devices, timeout: .seconds(300))
        let dashboard = try await DashboardClient.signIn(port: scenario.httpPort, token: FleetScenario.token)

        let usage = [("broker (mosquitto)", ProcessUsage(scenario.broker.processIdentifier ?? 0))]
            + sims.enumerated().map { ("simulator \($0.offset + 1) (fleet-sim, \(devices / processes) \(kind))", ProcessUsage($0.element.processIdentifier)) }
            + [("console (fleet-console)", ProcessUsage(scenario.console.processIdentifier))]
        let messages0 = await scenario.metric("fleet_ingest_messages_total") ?? 0
        var lags: [Double] = []
        // The whole list (what clients before paging get) and a page of it.
        let endpoints = ["/api/v1/devices", "/api/v1/devices?limit=50&sort=-last_seen", "/api/v1/devices/north/sim-0001", "/api/v1/sites", "/api/v1/alerts", "/api/v1/usage"]
        let pages = ["/", "/devices", "/devices/north/sim-0001"]
        var times: [String: [Double]] = [:]
        let clock = ContinuousClock()
        let start = clock.now
        for second in 1...window {
            if let lag = await scenario.metric("fleet_ingest_lag_seconds") { lags.append(lag) }
            for path in endpoints { times["API GET " + path, default: []].append(try await scenario.call("GET", path).seconds * 1000) }
            for path in pages { times["dashboard GET " + path, default: []].append(try await dashboard.get(path) * 1000) }
            // Paced sampling: one round a second over the window (a measurement, not a wait for a condition).
            let next = start + .seconds(second)
            if clock.now < next { try await Task.sleep(until: next, clock: clock) }
        }
        let elapsed = start.duration(to: clock.now).seconds
        let messages = (await scenario.metric("fleet_ingest_messages_total") ?? 0) - messages0
        let readings = usage.map { ($0.0, $0.1.read()) }
        for sim in sims { sim.terminate() }

        print("| \(devices) \(kind), \(telemetryInterval) s telemetry, \(window) s window | value | goal |")
        print("| --- | ---: | --- |")
        print("| devices online in the console after the simulator started | \(String(format: "%.1f", online.seconds)) s | |")
        print("| messages ingested by the console | \(Int(messages / elapsed)) msg/s | |")
        print("| ingest lag (age of the last live message), sampled each second: p50 / p95 / max | \(String(format: "%.3f / %.3f / %.3f", percentile(lags, 0.5), percentile(lags, 0.95), lags.max() ?? 0)) s | < 1 s |")
        for (name, values) in times.sorted(by: { $0.key < $1.key }) {
            print("| \(name): p50 / p95 / max | \(String(format: "%.1f / %.1f / %.1f", percentile(values, 0.5), percentile(values, 0.95), values.max() ?? 0)) ms | p95 < 200 ms |")
        }
        BenchResult("load, \(devices) devices: ingest lag p95", value: percentile(lags, 0.95), unit: "s", goal: 1, .atMost).print()
        for (name, values) in times.sorted(by: { $0.key < $1.key }) {
            BenchResult("load, \(devices) devices: \(name) p95", value: percentile(values, 0.95), unit: "ms", goal: 200, .atMost).print()
        }
        for (name, r) in readings {
            print("| \(name): CPU, RSS | \(String(format: "%.1f", r.cpuPercent)) % of a core, \(String(format: "%.1f", r.rssMiB)) MiB | |")
        }
    }
}

/// A signed-in dashboard user: POST /login with the token, then pages with the session cookie.
struct DashboardClient {
    let port: Int
    let cookie: String

    static func signIn(port: Int, token: String) async throws -> DashboardClient {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/login")!)
        request.httpMethod = "POST"
        request.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data("token=\(token)".utf8)
        let session = URLSession(configuration: .ephemeral, delegate: NoRedirects(), delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        let (_, response) = try await session.data(for: request)
        guard let http = response as? HTTPURLResponse, let setCookie = http.value(forHTTPHeaderField: "Set-Cookie"),
              let cookie = setCookie.split(separator: ";").first else {
            throw ValidationError("dashboard sign-in did not set a session cookie: \(response)")
        }
        return DashboardClient(port: port, cookie: String(cookie))
    }

    /// Seconds a page took; throws unless it answered 200 (a signed-in page, not the redirect to /login).
    func get(_ path: String) async throws -> Double {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.setValue(cookie, forHTTPHeaderField: "Cookie")
        let clock = ContinuousClock()
        let start = clock.now
        let (_, response) = try await URLSession.shared.data(for: request)
        let took = start.duration(to: clock.now).seconds
        guard (response as? HTTPURLResponse)?.statusCode == 200 else { throw ValidationError("dashboard \(path) answered \(response)") }
        return took
    }
}

/// Keeps the 303 of the sign-in, so its Set-Cookie can be read.
final class NoRedirects: NSObject, URLSessionTaskDelegate, Sendable {
    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void) {
        completionHandler(nil)
    }
}

// MARK: reconnect storm

/// Issue 9's reconnect storm: N connected massagers with sessions running,
/// the broker restarted under them. From the broker's own log: when every
/// device was back, and how connection attempts spread over one-second bins
/// (the backoff's jitter). Then the simulator is stopped and every event it
/// numbered must be stored by the console exactly once.
struct StormBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "storm", abstract: "Restart the broker under N devices: time until all are back, attempts per second, no QoS 1 message lost.")
    @OptionGroup var fleet: SimulatedFleet
    var devices: Int { fleet.devices }
    @Option(name: .customLong("sessions-per-hour"), help: "Sessions each massager starts per simulated hour (at --speed 60).") var sessionsPerHour = 12.0
    @Option(name: .customLong("down-seconds"), help: "Seconds the broker stays down (0: a plain restart).") var downSeconds = 5.0

    func run() async throws {
        // Persistence: the console's session and its queued QoS 1 messages survive the restart, as in production.
        let scenario = try await FleetScenario(brokerConfig: "set_tcp_nodelay true\nmax_queued_messages 0\n", brokerPersistence: true)
        defer { scenario.stop() }
        let sims = try scenario.startSimulators(devices: devices, processes: fleet.processes, thin: fleet.thin, extraArguments: [
            "--speed", "60", "--sessions-per-hour", "\(sessionsPerHour)", "--summary-every", "2"])
        defer { for sim in sims { sim.kill() } }
        let online = try await scenario.waitForDevicesOnline(devices, timeout: .seconds(300))
        // Let sessions get going before the outage (load, not a wait for a condition).
        try await Task.sleep(for: .seconds(10))

        let clock = ContinuousClock()
        let restartedAt = clock.now
        let wallRestart = Date()
        try await scenario.broker.stop()
        // The outage: devices retry with backoff meanwhile (a duration, not a wait for a condition).
        if downSeconds > 0 { try await Task.sleep(for: .seconds(downSeconds)) }
        try await scenario.broker.restart()
        let returnedAt = clock.now
        var back: Duration?
        do {
            try await waitUntil(timeout: .seconds(120), pollEvery: .milliseconds(200), "\(devices) devices reconnected (broker log)") {
                if StormLog(scenario.broker.log()).connectedClients.filter({ $0.contains("-sim-") }).count >= devices {
                    back = returnedAt.duration(to: clock.now)
                    return true
                }
                return false
            }
        } catch {
            let log = StormLog(scenario.broker.log())
            print("reconnected per the broker log: \(log.connectedClients.filter { $0.contains("-sim-") }.count) of \(devices)")
            print("broker log since the restart (last 40 lines):\n" + log.lines.suffix(40).joined(separator: "\n"))
            for sim in sims { print("fleet-sim (last 5 lines):\n" + sim.standardOutput().split(separator: "\n").suffix(5).joined(separator: "\n")) }
            throw error
        }
        let log = StormLog(scenario.broker.log())
        let bins = log.attemptsPerSecond
        let mean = Double(bins.reduce(0, +)) / Double(max(bins.count, 1))
        let peak = bins.max() ?? 0

        print("| reconnect storm: broker restarted under \(devices) \(fleet.thin ? "thin devices" : "agents") | value | goal |")
        print("| --- | ---: | --- |")
        print("| devices online in the console before the restart | \(devices) (after \(String(format: "%.1f", online.seconds)) s) | |")
        print("| broker stopped at \(wallRestart), down for | \(String(format: "%.1f", restartedAt.duration(to: returnedAt).seconds)) s | |")
        print("| all \(devices) reconnected, after the broker was back | \(String(format: "%.1f", back?.seconds ?? -1)) s (polled every 0.2 s) | ≤ 30 s |")
        print("| connection attempts after the restart | \(bins.reduce(0, +)) over \(bins.count) one-second bins: \(bins.map(String.init).joined(separator: " ")) | |")
        print("| busiest bin / mean | \(peak) / \(String(format: "%.1f", mean)) = \(String(format: "%.2f", Double(peak) / max(mean, 1)))× | ≤ 3× |")
        BenchResult("storm, \(devices) devices: all back after the broker returned", value: back?.seconds ?? .infinity, unit: "s", goal: 30, .atMost).print()
        BenchResult("storm, \(devices) devices: busiest one-second bin / mean", value: Double(peak) / max(mean, 1), unit: "×", goal: 3, .atMost).print()
        guard !fleet.thin else {
            // A thin device keeps no outbox (ThinDevice): what it would have
            // sent during the outage is not kept, so there is nothing to count.
            print("| QoS 1 events lost | not measured: thin devices keep no outbox; the storm of full agents measures it | |")
            return
        }

        // Run on, then stop the fleet: every agent flushes its outbox on the way out.
        try await Task.sleep(for: .seconds(10))
        var numbered = 0, backlog = 0
        for sim in sims {
            _ = try await sim.stop(gracePeriod: .seconds(120))
            guard let totals = lastLine(sim.standardOutput(), startingWith: "fleet-sim totals"),
                  let events = number(after: "events", in: totals), let left = number(after: "outbox", in: totals) else {
                throw ValidationError("fleet-sim printed no totals:\n\(sim.standardOutput().suffix(2000))")
            }
            numbered += events
            backlog += left
        }
        var stored = 0
        _ = try? await waitUntil(timeout: .seconds(60), pollEvery: .milliseconds(200), "the console stored \(numbered) events") {
            stored = Int(await scenario.metric("fleet_events_stored_total") ?? 0)
            return stored >= numbered
        }
        let duplicates = Int(await scenario.metric("fleet_events_duplicate_total") ?? -1)
        print("| events numbered by the agents | \(numbered) | |")
        print("| messages (events, usage, reported config) still in outboxes at the simulator's exit, kept for its next start | \(backlog) | |")
        print("| events stored by the console / duplicates ignored | \(stored) / \(duplicates) | stored = numbered |")
        print("| QoS 1 events lost | \(numbered - stored) | 0 |")
        BenchResult("storm, \(devices) devices: QoS 1 events lost", value: Double(numbered - stored), unit: "events", goal: 0, .atMost).print()
    }
}

/// What mosquitto's log says after its last start.
struct StormLog {
    /// Lines after the last "mosquitto version … starting".
    let lines: [Substring]

    init(_ text: String) {
        let all = text.split(separator: "\n")
        let start = all.lastIndex { $0.contains("mosquitto version") && $0.contains("starting") } ?? all.startIndex
        lines = Array(all[start...])
    }

    /// Client ids that completed a connection ("New client connected from … as ID (…)").
    var connectedClients: Set<Substring> {
        var ids = Set<Substring>()
        for line in lines {
            guard let r = line.range(of: "New client connected from "), let asRange = line.range(of: " as ", range: r.upperBound..<line.endIndex) else { continue }
            ids.insert(line[asRange.upperBound...].prefix { $0 != " " })
        }
        return ids
    }

    /// TCP connection attempts ("New connection from") per one-second bin, from the first to the last.
    var attemptsPerSecond: [Int] {
        var seconds: [Int] = []
        // The fixture's log stamps are local "%Y-%m-%dT%H:%M:%S"; read as UTC, the differences are right.
        for line in lines where line.contains("New connection from") {
            guard let colon = line.range(of: ": "),
                  let date = try? Date.ISO8601FormatStyle().parse(String(line[..<colon.lowerBound]) + "Z") else { continue }
            seconds.append(Int(date.timeIntervalSince1970))
        }
        guard let first = seconds.min(), let last = seconds.max() else { return [] }
        var bins = Array(repeating: 0, count: last - first + 1)
        for s in seconds { bins[s - first] += 1 }
        return bins
    }
}

// MARK: start

/// Issue 23: a remote start across every idle device of the fleet, from the
/// POST to every device's result final (p100), one command per site sent at
/// once, as an operator would start a site's sessions.
struct StartBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "start", abstract: "A remote start_session across N idle devices: from POST to every result final.")
    @OptionGroup var fleet: SimulatedFleet
    var devices: Int { fleet.devices }
    var thin: Bool { fleet.thin }
    var processes: Int { fleet.processes }
    @Option(help: "The goal for the last result, in seconds (issue 23: 3 for 1,000 idle devices).") var goal = 3.0

    func run() async throws {
        let scenario = try await FleetScenario(brokerConfig: "set_tcp_nodelay true\nmax_queued_messages 0\n")
        defer { scenario.stop() }
        let sims = try scenario.startIdleSimulators(fleet)
        defer { for sim in sims { sim.kill() } }
        let onlineAfter = try await scenario.waitForDevicesOnline(devices, timeout: .seconds(300))
        // Idle as the console sees it (the first telemetry after the birth says so).
        try await waitUntil(timeout: .seconds(120), pollEvery: .milliseconds(500), "every device idle in the console") {
            let page = (try? await scenario.call("GET", "/api/v1/devices?state=idle&limit=1").json) ?? [:]
            return (page["total"] as? Int ?? 0) >= devices
        }
        let clock = ContinuousClock()
        let start = clock.now
        let ids = try await withThrowingTaskGroup(of: String.self) { group in
            for site in FleetScenario.sites {
                group.addTask {
                    let body: [String: Any] = ["action": "start_session", "params": ["program": "calf-release"], "targets": ["site": site, "idle_only": true], "ttl_s": 60]
                    let created = try await scenario.call("POST", "/api/v1/commands", try JSONSerialization.data(withJSONObject: body)).json
                    guard let id = created["id"] as? String else { throw ValidationError("the start was refused: \(created)") }
                    return id
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let accepted = start.duration(to: clock.now)
        var states: [String: Int] = [:]
        var targets = 0
        try await waitUntil(timeout: .seconds(300), pollEvery: .milliseconds(50), "every result final") {
            var counts: [String: Int] = [:]
            var all = 0
            for id in ids {
                let record = (try? await scenario.call("GET", "/api/v1/commands/\(id)").json) ?? [:]
                for result in record["results"] as? [[String: Any]] ?? [] {
                    counts[result["state"] as? String ?? "?", default: 0] += 1
                    all += 1
                }
            }
            states = counts
            targets = all
            return all > 0 && counts.filter { !["queued", "sent"].contains($0.key) }.values.reduce(0, +) == all
        }
        let took = start.duration(to: clock.now)
        let kind = thin ? "thin devices" : "agents"
        print("| remote start across \(devices) idle \(kind) (fleet-sim, \(processes) process\(processes == 1 ? "" : "es")) | value |")
        print("| --- | ---: |")
        print("| devices online in the console after start | \(String(format: "%.1f", onlineAfter.seconds)) s |")
        print("| commands accepted (one per site, sent together) | \(String(format: "%.3f", accepted.seconds)) s |")
        print("| results by state | \(states.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")) of \(targets) |")
        print("| from POST to every result final (p100) | \(String(format: "%.2f", took.seconds)) s (goal ≤ \(String(format: "%g", goal)) s) |")
        BenchResult("remote start across \(devices) idle \(thin ? "thin " : "")devices: p100", value: took.seconds, unit: "s", goal: goal, .atMost).print()
        if states["succeeded", default: 0] != devices {
            FileHandle.standardError.write(Data("fleet-bench start: \(states["succeeded", default: 0]) of \(devices) devices started\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// The simulated fleet of load, rollout, start and storm: how many devices, thin or
/// full agents, and how many fleet-sim processes share them.
struct SimulatedFleet: ParsableArguments {
    @Option(help: "Simulated devices.") var devices = 1000
    @Flag(help: "Thin simulated devices (fleet-sim --thin: the wire contract only, no engine or database each), for 10,000.") var thin = false
    @Option(help: "fleet-sim processes sharing the devices (each needs three file descriptors per device).") var processes = 1

    func validate() throws {
        guard devices >= 1, processes >= 1, processes <= devices else { throw ValidationError("--devices and --processes must be at least 1, and --processes at most --devices") }
    }
}
