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
/// mosquitto, the built `fleet-console` on a fresh database, and (when asked)
/// the built `fleet-sim` with N massagers. Everything it starts stops with it.
final class FleetScenario: Sendable {
    static let token = "bench-token"
    static let sites = ["north", "south"]

    let broker: MosquittoBroker
    let console: ProcessRunner
    let httpPort: Int
    let directory: TemporaryDirectory

    /// Starts the broker and the console; waits until the console serves `/metrics`.
    init(brokerConfig: String, brokerPersistence: Bool = false) async throws {
        ProcessStatistics.raiseOpenFileLimit()
        broker = try await MosquittoBroker.start(BrokerOptions(persistence: brokerPersistence, extraConfig: brokerConfig))
        directory = try TemporaryDirectory(prefix: "fleet-scenario")
        httpPort = try freeLoopbackPort()
        let configFile = directory.url.appendingPathComponent("console.yaml")
        try """
            broker: {host: 127.0.0.1, port: \(broker.port)}
            http: 127.0.0.1:\(httpPort)
            database: \(directory.url.appendingPathComponent("console.sqlite").path)
            sites: [\(Self.sites.map { "{id: \($0), name: \($0.capitalized), timezone: UTC}" }.joined(separator: ", "))]
            log_level: warning
            """.write(to: configFile, atomically: true, encoding: .utf8)
        console = try ProcessRunner.start(productsDirectory.appendingPathComponent("fleet-console"), arguments: ["serve", "--config", configFile.path],
                                          environment: ["FLEET_CONSOLE_ADMIN_TOKEN": Self.token])
        try await waitUntil(timeout: .seconds(30), "the console serves /metrics") { await self.metric("fleet_ingest_messages_total") != nil }
    }

    func stop() {
        console.kill()
        broker.stopNow()
    }

    /// Starts `fleet-sim` with `devices` massagers over ``sites``.
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

    /// One sample of a metric from the console's `/metrics` (without labels), or nil.
    func metric(_ name: String) async -> Double? {
        guard let url = URL(string: "http://127.0.0.1:\(httpPort)/metrics"),
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

/// The last line of `text` that starts with `prefix`.
func lastLine(_ text: String, startingWith prefix: String) -> Substring? {
    text.split(separator: "\n").last { $0.hasPrefix(prefix) }
}

/// The integer after `label ` in a summary line ("… events 1234, outbox 0").
func number(after label: String, in line: Substring) -> Int? {
    guard let range = line.range(of: label + " ") else { return nil }
    return Int(line[range.upperBound...].prefix { $0.isNumber })
}
