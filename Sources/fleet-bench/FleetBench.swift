import ArgumentParser
import FleetProtocol
import FleetTestSupport
import Foundation
import Mosquitto
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Benchmarks of the built executables, each against a reference measured in
/// the same run (docs/BENCHMARKS.md). Build in release first:
///   swift build -c release && .build/release/fleet-bench agent
@main
struct FleetBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet-bench",
        abstract: "Agent footprint, command round trip and pain-to-release; console ingest vs mosquitto_sub.",
        subcommands: [AgentBench.self, PainBench.self, ModbusBench.self, IngestBench.self, RolloutBench.self, LoadBench.self, StartBench.self, StormBench.self, EchoResponder.self, MemoryPressure.self])
}

/// The directory holding this binary and the other products.
let productsDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
let repository: URL = {
    var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    for _ in 0..<2 { dir = dir.deletingLastPathComponent() }
    return dir
}()

func percentile(_ values: [Double], _ p: Double) -> Double {
    let sorted = values.sorted()
    return sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * p))]
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    var milliseconds: Double { seconds * 1000 }
}

// MARK: agent

struct AgentBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "agent", abstract: "Agent RSS idle and in a session, idle CPU with 1 s telemetry, command round trip vs the bare broker round trip.")
    @Option(help: "Round trips to time.") var roundTrips = 1000
    @Option(help: "Seconds of idle to measure CPU over.") var idleSeconds = 20
    @Option(help: "The massage-agent binary to measure (default: the one beside this benchmark), e.g. a --static-swift-stdlib build.") var agent: String?
    @Option(help: "lock_memory in the agent's config (default: the agent's default, on).") var lockMemory: Bool?

    func run() async throws {
        // set_tcp_nodelay: small replies go out at once (docs/operations.md).
        let broker = try await MosquittoBroker.start(BrokerOptions(extraConfig: "set_tcp_nodelay true\n"))
        defer { broker.stopNow() }
        let data = try TemporaryDirectory(prefix: "agent-bench")
        let config = data.url.appendingPathComponent("agent.yaml")
        try """
            site: bench
            device: agent-1
            data_dir: \(data.url.appendingPathComponent("data").path)
            programs_dir: \(repository.appendingPathComponent("Config/programs").path)
            broker: {host: 127.0.0.1, port: \(broker.port), allow_plaintext: true}   # the bench broker: plain MQTT on loopback
            telemetry_interval_s: 1
            usage_interval_s: 60
            log_level: warning
            \(lockMemory.map { "lock_memory: \($0)" } ?? "")
            """.write(to: config, atomically: true, encoding: .utf8)
        let binary = agent.map { URL(fileURLWithPath: $0) } ?? productsDirectory.appendingPathComponent("massage-agent")
        let agent = try ProcessRunner.start(binary, arguments: ["--config", config.path])
        defer { agent.kill() }
        let pid = agent.processIdentifier

        let probe = try MQTTClient(configuration: MQTTConfiguration(host: broker.host, port: broker.port, clientID: "bench-probe"))
        try await probe.connect()
        let inbox = MessageCollector(probe)
        try await probe.subscribe("massage/v1/bench/agent-1/status", qos: .atLeastOnce)
        try await probe.subscribe("bench/replies/#", qos: .atLeastOnce)
        try await waitUntil(timeout: .seconds(30), "the agent is online") {
            inbox.messages(on: "massage/v1/bench/agent-1/status").contains { String(decoding: $0.payload, as: UTF8.self).contains("\"online\"") }
        }
        // Settle, then measure idle CPU over a window (a measurement, not a wait for a condition).
        // RSS idle: the largest of one sample a second over the window, so
        // that every timer of the idle agent (telemetry, usage, keepalive,
        // outbox) has run, not only what start-up left.
        try await Task.sleep(for: .seconds(3))
        let cpu0 = ProcessStatistics.cpuSeconds(pid)
        let clock = ContinuousClock()
        let t0 = clock.now
        var idle = ProcessStatistics.status(pid)
        var idlePSS = ProcessStatistics.proportionalSetMiB(pid)
        for _ in 0..<idleSeconds {
            try await Task.sleep(for: .seconds(1))
            let sample = ProcessStatistics.status(pid)
            if sample.rssMiB > idle.rssMiB { idle = sample }
            idlePSS = max(idlePSS, ProcessStatistics.proportionalSetMiB(pid))
        }
        let idleCPU = (ProcessStatistics.cpuSeconds(pid) - cpu0) / t0.duration(to: clock.now).seconds * 100

        // The two-hop reference: a responder process on the same client library that does
        // nothing but answer (probe → broker → responder → broker → probe, like a command).
        let echo = try ProcessRunner.start(productsDirectory.appendingPathComponent("fleet-bench"), arguments: ["echo", "--port", "\(broker.port)"])
        defer { echo.kill() }
        try await echo.waitForOutput("echo ready", timeout: .seconds(30))

        // Round trips: ping through the agent, the same request through the echo responder,
        // and a publish the probe receives itself (one pass through the broker).
        var agentTimes: [Double] = []
        var echoTimes: [Double] = []
        var brokerTimes: [Double] = []
        let cmdTopic = "massage/v1/bench/agent-1/cmd"
        // CPU per answer, agent and responder: the part of the round trip
        // that is theirs, without the scheduling of a shared machine.
        let agentCPU0 = ProcessStatistics.cpuSeconds(pid)
        let echoCPU0 = ProcessStatistics.cpuSeconds(echo.processIdentifier)
        for i in 0..<roundTrips {
            let before = inbox.count
            let start = clock.now
            let command = Command(id: "rt-\(i)", request: .ping)
            try await probe.publish(cmdTopic, payload: Array(try FleetJSON.encode(command)), qos: .atLeastOnce,
                                    properties: MQTTProperties(responseTopic: "bench/replies/agent", correlationData: Array("\(i)".utf8)))
            try await waitUntil(timeout: .seconds(5), pollEvery: .microseconds(50), "reply \(i)") { inbox.count > before }
            agentTimes.append(start.duration(to: clock.now).milliseconds)

            let before1 = inbox.count
            let start1 = clock.now
            try await probe.publish("bench/echo/request", payload: Array(try FleetJSON.encode(command)), qos: .atLeastOnce,
                                    properties: MQTTProperties(responseTopic: "bench/replies/echoed", correlationData: Array("\(i)".utf8)))
            try await waitUntil(timeout: .seconds(5), pollEvery: .microseconds(50), "echo reply \(i)") { inbox.count > before1 }
            echoTimes.append(start1.duration(to: clock.now).milliseconds)

            let before2 = inbox.count
            let start2 = clock.now
            try await probe.publish("bench/replies/echo", payload: Array("echo-\(i)".utf8), qos: .atLeastOnce)
            try await waitUntil(timeout: .seconds(5), pollEvery: .microseconds(50), "echo \(i)") { inbox.count > before2 }
            brokerTimes.append(start2.duration(to: clock.now).milliseconds)
        }
        let agentCPU = (ProcessStatistics.cpuSeconds(pid) - agentCPU0) / Double(roundTrips) * 1e6
        let echoCPU = (ProcessStatistics.cpuSeconds(echo.processIdentifier) - echoCPU0) / Double(roundTrips) * 1e6

        let start = Command(id: "bench-session", request: .startSession(.program(Identifier(rawValue: "full-leg-circulation")!)))
        try await probe.publish(cmdTopic, payload: Array(try FleetJSON.encode(start)), qos: .atLeastOnce,
                                properties: MQTTProperties(responseTopic: "bench/replies/agent"))
        // RSS during a session: the largest of a sample every half second over 10 s of it.
        var busy = ProcessStatistics.status(pid)
        var busyPSS = ProcessStatistics.proportionalSetMiB(pid)
        for _ in 0..<20 {
            try await Task.sleep(for: .milliseconds(500))
            let sample = ProcessStatistics.status(pid)
            if sample.rssMiB > busy.rssMiB { busy = sample }
            busyPSS = max(busyPSS, ProcessStatistics.proportionalSetMiB(pid))
        }
        await probe.shutdown()

        print("| agent measurement | value | reference / goal |")
        print("| --- | ---: | --- |")
        print("| RSS idle (largest of 1 s samples over the idle window) | \(String(format: "%.1f", idle.rssMiB)) MiB | goal ≤ 16 MB |")
        print("| RSS during a session (largest over its first 10 s) | \(String(format: "%.1f", busy.rssMiB)) MiB | goal ≤ 16 MB |")
        print("| PSS idle, same samples (shared pages divided among the processes mapping them) | \(String(format: "%.1f", idlePSS)) MiB | |")
        print("| PSS during a session, same samples | \(String(format: "%.1f", busyPSS)) MiB | |")
        print("| idle CPU, 1 s telemetry, \(idleSeconds) s window | \(String(format: "%.2f", idleCPU)) % of a core | goal ≤ 1 % |")
        print("| threads | \(idle.threads) | |")
        for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
            let agent = percentile(agentTimes, p), echoed = percentile(echoTimes, p), bare = percentile(brokerTimes, p)
            print("| command round trip \(name) (ping) | \(String(format: "%.3f", agent)) ms | through an echo responder (two broker passes, as a command takes) \(String(format: "%.3f", echoed)) ms: **\(String(format: "%.2f", agent / echoed))×** (goal ≤ 2×); one broker pass \(String(format: "%.3f", bare)) ms: \(String(format: "%.2f", agent / bare))× (the echo responder alone, which only answers: \(String(format: "%.2f", echoed / bare))×) |")
        }
        let p99 = (agent: percentile(agentTimes, 0.99), echoed: percentile(echoTimes, 0.99), bare: percentile(brokerTimes, 0.99))
        BenchResult("agent command round trip p99 vs the bare broker round trip", value: p99.agent, unit: "ms", reference: p99.bare,
                    referenceName: "one publish the probe receives itself", goal: 2, on: .ratio, .atMost).print()
        BenchResult("agent command round trip p99 vs an echo responder", value: p99.agent, unit: "ms", reference: p99.echoed,
                    referenceName: "echo responder", goal: 2, on: .ratio, .atMost).print()
        BenchResult("agent idle CPU, 1 s telemetry", value: idleCPU, unit: "% of a core", goal: 1, .atMost).print()
        print("| CPU per command (ping) | \(String(format: "%.0f", agentCPU)) µs | echo responder \(String(format: "%.0f", echoCPU)) µs per reply (both include their keepalive; the agent also its 1 s telemetry and engine ticks during the loop) |")
    }
}

// MARK: rollout

struct RolloutBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rollout", abstract: "Time to roll a config to N simulated devices in 5 waves with zero bake time.")
    @OptionGroup var fleet: SimulatedFleet
    var devices: Int { fleet.devices }
    var thin: Bool { fleet.thin }
    var processes: Int { fleet.processes }
    @Option(help: "The goal, in seconds (issue 23: 10 for 1,000 devices, 30 for 10,000).") var goal = 10.0

    func run() async throws {
        let scenario = try await FleetScenario(brokerConfig: "set_tcp_nodelay true\nmax_queued_messages 0\n")
        defer { scenario.stop() }
        let sims = try scenario.startIdleSimulators(fleet)
        defer { for sim in sims { sim.kill() } }
        func call(_ method: String, _ path: String, _ body: Data? = nil) async throws -> [String: Any] {
            try await scenario.call(method, path, body).json
        }
        let onlineAfter = try await scenario.waitForDevicesOnline(devices, timeout: .seconds(300))
        let clock = ContinuousClock()
        let document: [String: Any] = [
            "name": "bench", "config": ["telemetry_interval_s": 1],
            "targets": ["all": true], "waves": ["canary": 1, "percentages": [25, 50, 75, 100]],
            "bake_s": 0, "apply_timeout_s": 120, "error_threshold": ["percent": 10, "min_executed": 1, "action": "abort"],
        ]
        let start = clock.now
        let created = try await call("POST", "/api/v1/rollouts", try JSONSerialization.data(withJSONObject: document))
        guard let id = created["id"] as? String else { throw ValidationError("rollout refused: \(created)") }
        var final: [String: Any] = [:]
        try await waitUntil(timeout: .seconds(600), pollEvery: .milliseconds(100), "the rollout finished") {
            final = (try? await call("GET", "/api/v1/rollouts/\(id)")) ?? [:]
            let state = final["state"] as? String
            return state == "completed" || state == "aborted"
        }
        let took = start.duration(to: clock.now)
        let waves = (final["waves"] as? [[String: Any]])?.compactMap { $0["size"] as? Int } ?? []
        print("| rollout to \(devices) simulated \(thin ? "thin devices" : "agents") (fleet-sim, \(processes) process\(processes == 1 ? "" : "es")) | value |")
        print("| --- | ---: |")
        print("| devices online in the console after start | \(String(format: "%.1f", onlineAfter.seconds)) s |")
        print("| waves | \(waves.map(String.init).joined(separator: " + ")) |")
        print("| state, device counts | \(final["state"] ?? "?"), \(final["counts"] ?? "?") |")
        print("| time from POST to completed | \(String(format: "%.2f", took.seconds)) s (goal ≤ \(String(format: "%g", goal)) s) |")
        BenchResult("rollout to \(devices) \(thin ? "thin " : "")devices, 5 waves, bake 0", value: took.seconds, unit: "s", goal: goal, .atMost).print()
    }
}

// MARK: echo

/// The reference responder for `agent`: answers every request on
/// `bench/echo/request` at its response topic with its correlation data, as
/// the agent answers a command, with nothing in between.
struct EchoResponder: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "echo", abstract: "Answer bench/echo/request at its response topic (the agent bench's reference).", shouldDisplay: false)
    @Option(help: "Broker port on 127.0.0.1.") var port: Int

    func run() async throws {
        let client = try MQTTClient(configuration: MQTTConfiguration(host: "127.0.0.1", port: port, clientID: "bench-echo"))
        try await client.connect()
        try await client.subscribe("bench/echo/request", qos: .atLeastOnce)
        print("echo ready")
        for await message in client.messages {
            guard let topic = message.properties.responseTopic else { continue }
            _ = try? await client.publish(topic, payload: message.payload, qos: .atLeastOnce,
                                          properties: MQTTProperties(correlationData: message.properties.correlationData))
        }
    }
}
