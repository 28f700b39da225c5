import ArgumentParser
import FleetTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// MARK: modbus

/// Issue 21, point 7: what driving a real controller board costs the agent,
/// and how fast pain is released with the button on the board.
///
/// For each hardware kind (the in-process simulator, then
/// `massager-controller` over Modbus TCP on loopback and over Modbus RTU on
/// a pseudo-terminal line at 115200 baud) it runs `massage-agent` at speed 1
/// through one session of `--seconds` and reads the agent's CPU time over
/// that session: the ratio against the simulator in the same run is the
/// link's cost. Then, for the two Modbus kinds, `--presses` times: a fresh
/// agent (a pain abort locks remote starts out for 120 s), a session, a
/// press of the stop button on the controller (`press-timed`), which
/// answers once the board released the cells by itself (the second
/// channel's half), and the time until the agent's `session_aborted
/// pain_signal` reaches a subscriber (the agent's half, MQTT included).
struct ModbusBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "modbus",
        abstract: "Agent CPU with a Modbus controller (TCP, RTU) against the in-process simulator, and pain-to-release with the button on the controller.")
    @Option(help: "Length of the session whose CPU is measured, per hardware kind (s).") var seconds = 20
    @Option(help: "Stop-button presses per Modbus kind.") var presses = 10
    @Option(help: "The massage-agent binary (default: the one beside fleet-bench).") var agent: String?
    @Option(name: .customLong("timeout-ms"), help: "The agent's Modbus response timeout (ms).") var timeoutMilliseconds = 8

    enum Kind: String, CaseIterable { case simulated, tcp = "modbus-tcp", rtu = "modbus-rtu" }

    func run() async throws {
        guard seconds >= 5, presses >= 1 else { throw ValidationError("--seconds must be at least 5 and --presses at least 1") }
        let binary = agent.map { URL(fileURLWithPath: $0) } ?? productsDirectory.appendingPathComponent("massage-agent")
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw ValidationError("\(binary.path) is not an executable; build it or pass --agent")
        }
        let broker = try await MosquittoBroker.start(BrokerOptions(extraConfig: "set_tcp_nodelay true\n"))
        defer { broker.stopNow() }
        let probe = try await FleetProbe.connect(to: broker, name: "modbus-bench")

        var cpu: [Kind: (agent: Double, controller: Double?)] = [:]
        var boardRelease: [Kind: [Double]] = [:]
        var agentAbort: [Kind: [Double]] = [:]
        for kind in Kind.allCases {
            FileHandle.standardError.write(Data("==> \(kind.rawValue): a \(seconds) s session\n".utf8))
            let controller = try await Self.controller(kind)
            defer { controller?.process.kill() }
            let run = try await AgentRun.start(binary: binary, broker: broker, probe: probe, hardware: hardware(kind, controller))
            defer { run.process.kill() }
            let agentCPU0 = ProcessStatistics.cpuSeconds(run.process.processIdentifier)
            let controllerCPU0 = controller.map { ProcessStatistics.cpuSeconds($0.process.processIdentifier) }
            let clock = ContinuousClock()
            let started = clock.now
            let id = try await run.startSession(seconds: seconds)
            _ = try await probe.waitForEvent(type: "session_completed", sessionID: id, on: run.device, timeout: .seconds(seconds + 30))
            let took = started.duration(to: clock.now).seconds
            let agentCPU = (ProcessStatistics.cpuSeconds(run.process.processIdentifier) - agentCPU0) / took * 100
            let controllerCPU = controller.map { (ProcessStatistics.cpuSeconds($0.process.processIdentifier) - (controllerCPU0 ?? 0)) / took * 100 }
            cpu[kind] = (agentCPU, controllerCPU)
            run.process.kill()

            guard let controller else { continue }
            FileHandle.standardError.write(Data("==> \(kind.rawValue): \(presses) presses of the controller's stop button\n".utf8))
            for index in 0..<presses {
                let pressRun = try await AgentRun.start(binary: binary, broker: broker, probe: probe, hardware: hardware(kind, controller))
                defer { pressRun.process.kill() }
                let id = try await pressRun.startSession(seconds: 60)
                _ = try await probe.waitForEvent(type: "session_started", sessionID: id, on: pressRun.device)
                try await Task.sleep(for: .milliseconds(300 + 37 * index))  // pressure on the leg, at a varying moment
                let mark = probe.mark()
                let pressed = clock.now
                let answer = try await controller.say("press-timed")
                guard let value = answer.split(separator: "=").last.flatMap({ Double($0) }), answer.hasPrefix("ok") else {
                    throw ValidationError("press \(index): the controller answered \(answer)")
                }
                boardRelease[kind, default: []].append(value)
                let aborted = try await probe.waitForEvent(type: "session_aborted", sessionID: id, on: pressRun.device, after: mark, timeout: .seconds(10))
                agentAbort[kind, default: []].append(pressed.duration(to: clock.now).milliseconds)
                guard aborted["reason"]?.string == "pain_signal" else { throw ValidationError("press \(index): aborted \(aborted)") }
                _ = try await controller.say("letgo")
                pressRun.process.kill()
                _ = try? await pressRun.process.waitForExit(timeout: .seconds(5))
            }
        }

        await probe.close()

        let pct = { (value: Double) in String(format: "%.1f", value) }
        let ms = { (values: [Double]) in
            String(format: "%.2f / %.2f ms", percentile(values, 0.5), values.max() ?? 0)
        }
        let simulatedCPU = cpu[.simulated]?.agent ?? 0
        print("| \(binary.lastPathComponent) at speed 1, \(seconds) s session, \(timeoutMilliseconds) ms response timeout | agent CPU | vs simulator | controller CPU | board releases after the press (p50 / max) | agent's pain_signal abort on the wire (p50 / max) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for kind in Kind.allCases {
            guard let c = cpu[kind] else { continue }
            let ratio = simulatedCPU > 0 ? String(format: "%.2f×", c.agent / simulatedCPU) : "?"
            print("| \(kind.rawValue) | \(pct(c.agent)) % | \(ratio) | \(c.controller.map { pct($0) + " %" } ?? "–") | \(boardRelease[kind].map(ms) ?? "–") | \(agentAbort[kind].map(ms) ?? "–") |")
        }
    }

    func hardware(_ kind: Kind, _ controller: Controller?) -> String {
        switch kind {
        case .simulated: "{kind: simulated, seed: 1}"
        case .tcp: "{kind: modbus-tcp, host: 127.0.0.1, port: \(controller?.address ?? ""), timeout_ms: \(timeoutMilliseconds)}"
        case .rtu: "{kind: modbus-rtu, device: \(controller?.address ?? ""), baud: 115200, timeout_ms: \(timeoutMilliseconds)}"
        }
    }

    /// `massager-controller serve` for a Modbus kind, with its stdin for commands.
    final class Controller: Sendable {
        let process: ProcessRunner
        /// The TCP port, or the agent's end of the pseudo-terminal line.
        let address: String

        init(process: ProcessRunner, address: String) {
            self.process = process
            self.address = address
        }

        /// Sends one stdin command and returns its one-line answer.
        func say(_ command: String) async throws -> String {
            let before = process.standardOutput().split(separator: "\n").count
            try process.write(command + "\n")
            return try await waitForValue(timeout: .seconds(10), pollEvery: .milliseconds(2), "the controller's answer to \(command)") {
                let lines = process.standardOutput().split(separator: "\n")
                return lines.count > before ? String(lines[before]) : nil
            }
        }
    }

    static func controller(_ kind: Kind) async throws -> Controller? {
        let binary = productsDirectory.appendingPathComponent("massager-controller")
        switch kind {
        case .simulated:
            return nil
        case .tcp:
            let process = try ProcessRunner.start(binary, arguments: ["serve", "--tcp", "127.0.0.1:0"], standardInput: true)
            try await process.waitForOutput("listening on 127.0.0.1:")
            guard let port = process.standardOutput().split(separator: "\n").first?.split(separator: ":").last else {
                throw ValidationError("massager-controller did not print its port: \(process.standardOutput())")
            }
            return Controller(process: process, address: String(port))
        case .rtu:
            let process = try ProcessRunner.start(binary, arguments: ["serve", "--rtu-pty"], standardInput: true)
            try await process.waitForOutput("agent device: ")
            guard let line = process.standardOutput().split(separator: "\n").first(where: { $0.hasPrefix("agent device: ") }) else {
                throw ValidationError("massager-controller did not print the agent's device: \(process.standardOutput())")
            }
            return Controller(process: process, address: String(line.dropFirst("agent device: ".count)))
        }
    }
}

/// One `massage-agent` process with its own data directory, online at the broker.
private struct AgentRun {
    let process: ProcessRunner
    let device: FleetProbe.Device
    let probe: FleetProbe
    let directory: TemporaryDirectory

    static func start(binary: URL, broker: MosquittoBroker, probe: FleetProbe, hardware: String) async throws -> AgentRun {
        let directory = try TemporaryDirectory(prefix: "modbus-bench")
        let name = "m-\(UUID().uuidString.prefix(6).lowercased())"
        let config = directory.url.appendingPathComponent("agent.yaml")
        try """
            site: bench
            device: \(name)
            data_dir: \(directory.url.appendingPathComponent("data").path)
            programs_dir: \(repository.appendingPathComponent("Config/programs").path)
            broker: {host: 127.0.0.1, port: \(broker.port), allow_plaintext: true}   # the bench broker: plain MQTT on loopback
            telemetry_interval_s: 1
            usage_interval_s: 60
            log_level: warning
            hardware: \(hardware)
            """.write(to: config, atomically: true, encoding: .utf8)
        let device = FleetProbe.Device(site: "bench", device: name)
        let mark = probe.mark()
        let process = try ProcessRunner.start(binary, arguments: ["--config", config.path])
        do {
            _ = try await probe.waitForStatus(device, state: "online", after: mark, timeout: .seconds(30))
        } catch {
            process.kill()
            throw ValidationError("\(name) did not come online (\(error)): \(process.standardError())")
        }
        return AgentRun(process: process, device: device, probe: probe, directory: directory)
    }

    /// Starts a one-step session on the calf; returns its id.
    func startSession(seconds: Int) async throws -> String {
        let steps: WireJSON = ["steps": [["target": "calf", "technique": "compression", "intensity": 4, "duration_s": .int(seconds)]]]
        // After a press the controller's latch clears once the new agent's
        // first idle ticks have written zero demand: until then the agent
        // reads the button as held and refuses.
        return try await waitForValue(timeout: .seconds(10), pollEvery: .milliseconds(50), "a session start on \(device)") {
            let reply = try await probe.send(action: "start_session", params: steps, to: device)
            if reply.ok, let id = reply.result?["session_id"]?.string { return id }
            if reply.errorMessage?.contains("stop button is held") == true { return nil }
            throw ValidationError("start_session refused: \(reply)")
        }
    }
}
