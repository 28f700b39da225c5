import ArgumentParser
import FleetTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A whole fleet on this machine, as the scale benchmarks need it: a real
/// mosquitto, the built `fleet-console` on a fresh database (or several
/// consoles on one database, as replicas), and (when asked) the built
/// `fleet-sim` with N massagers. Everything it starts stops with it.
final class FleetScenario: Sendable {
    static let token = "bench-token"
    static let sites = ["north", "south"]

    /// One `fleet-console serve` of the scenario and the HTTP port it serves.
    struct Console: Sendable {
        let process: ProcessRunner
        let httpPort: Int
    }

    let broker: MosquittoBroker
    /// The consoles in start order (one unless asked for more).
    let consoles: [Console]
    let directory: TemporaryDirectory
    /// The first console.
    var console: ProcessRunner { consoles[0].process }
    /// The first console's HTTP port.
    var httpPort: Int { consoles[0].httpPort }

    /// Starts the broker and the consoles, one after another, each once the
    /// one before serves `/metrics` (so only the first runs the database's
    /// migrations); returns when the last serves `/metrics`.
    ///
    /// - Parameters:
    ///   - database: what every console gets as `--db` (e.g. a
    ///     `postgres://` URL); nil for a fresh SQLite file in ``directory``.
    ///   - consoleArguments: one element per console to start: its extra
    ///     `serve` arguments (e.g. `["--replica", "r2"]`). By default one
    ///     console without any.
    init(brokerConfig: String, brokerPersistence: Bool = false, database: String? = nil, consoleArguments: [[String]] = [[]]) async throws {
        precondition(!consoleArguments.isEmpty, "a scenario runs at least one console")
        ProcessStatistics.raiseOpenFileLimit()
        broker = try await MosquittoBroker.start(BrokerOptions(persistence: brokerPersistence, extraConfig: brokerConfig))
        directory = try TemporaryDirectory(prefix: "fleet-scenario")
        let configFile = directory.url.appendingPathComponent("console.yaml")
        try """
            broker: {host: 127.0.0.1, port: \(broker.port), allow_plaintext: true}   # the bench broker: plain MQTT on loopback
            database: \(directory.url.appendingPathComponent("console.sqlite").path)
            sites: [\(Self.sites.map { "{id: \($0), name: \($0.capitalized), timezone: UTC}" }.joined(separator: ", "))]
            log_level: warning
            """.write(to: configFile, atomically: true, encoding: .utf8)
        var started: [Console] = []
        for extra in consoleArguments {
            let port = try freeLoopbackPort()
            let process = try ProcessRunner.start(
                productsDirectory.appendingPathComponent("fleet-console"),
                arguments: ["serve", "--config", configFile.path, "--http", "127.0.0.1:\(port)"] + (database.map { ["--db", $0] } ?? []) + extra,
                environment: ["FLEET_CONSOLE_ADMIN_TOKEN": Self.token])
            let console = Console(process: process, httpPort: port)
            started.append(console)
            let name = "the console (fleet-console serve \(extra.joined(separator: " ")))"
            try await waitUntil(timeout: .seconds(30), "\(name) serves /metrics on port \(port)") {
                guard process.isRunning else {
                    throw FixtureError("\(name) exited (\(process.exitStatus.map { "\($0)" } ?? "?")): \(process.standardError().suffix(2000))")
                }
                return await Self.metric("fleet_ingest_messages_total", port: port) != nil
            }
        }
        consoles = started
    }

    func stop() {
        for console in consoles { console.process.kill() }
        broker.stopNow()
    }

    /// Starts `fleet-sim` with `devices` massagers over ``sites``.
    /// `devices` simulated massagers split over `processes` fleet-sim
    /// processes (sim-0001… numbered across them), thin ones when asked.
    func startSimulators(devices: Int, processes: Int, thin: Bool, extraArguments: [String]) throws -> [ProcessRunner] {
        var sims: [ProcessRunner] = []
        for p in 0..<processes {
            let first = p * devices / processes, count = (p + 1) * devices / processes - first
            do {
                sims.append(try startSimulator(devices: count, extraArguments: ["--first", "\(first + 1)"] + extraArguments + (thin ? ["--thin"] : [])))
            } catch {
                for sim in sims { sim.kill() }
                throw error
            }
        }
        return sims
    }

    /// `fleet` as the rollout and start benches want it: real time, no
    /// sessions of their own, every device idle until told otherwise.
    func startIdleSimulators(_ fleet: SimulatedFleet) throws -> [ProcessRunner] {
        try startSimulators(devices: fleet.devices, processes: fleet.processes, thin: fleet.thin,
                            extraArguments: ["--speed", "1", "--sessions-per-hour", "0", "--summary-every", "600"])
    }

    func startSimulator(devices: Int, extraArguments: [String]) throws -> ProcessRunner {
        try ProcessRunner.start(productsDirectory.appendingPathComponent("fleet-sim"), arguments: [
            "--devices", "\(devices)", "--site-names", Self.sites.joined(separator: ","), "--broker", "127.0.0.1:\(broker.port)",
            "--data-dir", directory.url.appendingPathComponent("fleet").path,
            "--programs-dir", repository.appendingPathComponent("Config/programs").path,
        ] + extraArguments)
    }

    /// A request to the console's API with the admin token; the decoded JSON object and the time it took.
    func call(_ method: String = "GET", _ path: String, _ body: Data? = nil) async throws -> (json: [String: Any], seconds: Double) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(httpPort)\(path)")!)
        request.httpMethod = method
        request.httpBody = body
        request.setValue("Bearer \(Self.token)", forHTTPHeaderField: "Authorization")
        let clock = ContinuousClock()
        let start = clock.now
        let (data, _) = try await URLSession.shared.data(for: request)
        let took = start.duration(to: clock.now).seconds
        return ((try JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:], took)
    }

    /// One sample of a metric from the first console's `/metrics` (without labels), or nil.
    func metric(_ name: String) async -> Double? {
        await Self.metric(name, port: httpPort)
    }

    /// One sample of a metric from `console`'s `/metrics` (without labels), or nil.
    func metric(_ name: String, of console: Console) async -> Double? {
        await Self.metric(name, port: console.httpPort)
    }

    /// The sum of a metric over every console, or nil if one of them did not answer.
    func metricSum(_ name: String) async -> Double? {
        var sum = 0.0
        for console in consoles {
            guard let value = await Self.metric(name, port: console.httpPort) else { return nil }
            sum += value
        }
        return sum
    }

    /// One sample of a metric from `/metrics` on `port` (without labels), or nil.
    static func metric(_ name: String, port: Int) async -> Double? {
        guard let url = URL(string: "http://127.0.0.1:\(port)/metrics"),
              let (data, _) = try? await URLSession.shared.data(from: url) else { return nil }
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.split(separator: " ").last ?? "")
        }
        return nil
    }

    /// Waits until the console lists `count` devices online.
    func waitForDevicesOnline(_ count: Int, timeout: Duration) async throws -> Duration {
        let clock = ContinuousClock()
        let start = clock.now
        try await waitUntil(timeout: timeout, pollEvery: .milliseconds(500), "\(count) devices online in the console") {
            let list = (try? await self.call("GET", "/api/v1/devices"))?.json["devices"] as? [[String: Any]] ?? []
            return list.filter { ($0["online"] as? Bool) == true }.count >= count
        }
        return start.duration(to: clock.now)
    }
}

/// CPU (share of one core) and RSS of a process over a window.
struct ProcessUsage {
    let pid: Int32
    let cpu0: Double
    let clock = ContinuousClock()
    let start: ContinuousClock.Instant

    init(_ pid: Int32) {
        self.pid = pid
        cpu0 = ProcessStatistics.cpuSeconds(pid)
        start = clock.now
    }

    /// (percent of one core since `init`, RSS now in MiB)
    func read() -> (cpuPercent: Double, rssMiB: Double) {
        let elapsed = start.duration(to: clock.now).seconds
        return ((ProcessStatistics.cpuSeconds(pid) - cpu0) / max(elapsed, 0.001) * 100, ProcessStatistics.status(pid).rssMiB)
    }
}

/// CPU seconds (user + system) a server process and its children have used:
/// its own, its exited children's (cutime + cstime, once it reaped them)
/// and its running children's, e.g. PostgreSQL's postmaster with its
/// backends and background workers (Linux /proc). 0 when it is gone.
func cpuSecondsWithChildren(_ pid: Int32) -> Double {
    /// The fields of /proc/PID/stat after the command name: state, parent, …; utime is [11].
    func stat(_ pid: Int32) -> [Substring]? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(close, offsetBy: 2)...].split(separator: " ")
        return fields.count > 14 ? fields : nil
    }
    func ticks(_ fields: [Substring]) -> Double { fields[11...14].reduce(0) { $0 + (Double($1) ?? 0) } }
    guard let own = stat(pid) else { return 0 }
    var total = ticks(own)
    let parent = Substring(String(pid))
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
        guard let child = Int32(entry), child != pid, let fields = stat(child), fields[1] == parent else { continue }
        total += ticks(fields)
    }
    return total / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// The last line of `text` that starts with `prefix`.
func lastLine(_ text: String, startingWith prefix: String) -> Substring? {
    text.split(separator: "\n").last { $0.hasPrefix(prefix) }
}

/// The integer after `label ` in a summary line ("… events 1234, outbox 0").
func number(after label: String, in line: Substring) -> Int? {
    guard let range = line.range(of: label + " ") else { return nil }
    return Int(line[range.upperBound...].prefix { $0.isNumber })
}
