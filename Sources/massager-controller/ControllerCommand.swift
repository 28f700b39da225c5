import ArgumentParser
import Foundation
import MassageEngine
import MassagerLink

/// `massager-controller serve --tcp HOST:PORT`: the reference controller
/// board (docs/hardware.md). It prints `listening on HOST:PORT` once it
/// serves, then reads commands on stdin, one a line, and answers each with
/// one line: `press` / `letgo` (the stop button), `freeze` / `thaw` (stop
/// answering Modbus requests, resume), `drop` (close the agent's
/// connection), `fault actuator ZONE`, `fault clear`, `status`.
@main
struct ControllerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "massager-controller",
        abstract: "The reference massager controller board: serves the MassageFleet register map over Modbus TCP with a simulated massager behind it.",
        subcommands: [Serve.self, Check.self, Bench.self])
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the register map until killed; test commands on stdin.")

    @Option(help: "Listen on HOST:PORT (port 0: any free port, printed).") var tcp: String
    @Option(help: "Modbus unit id.") var unit = 1
    @Option(name: .customLong("watchdog-ms"), help: "Release by itself when no new command arrives within this many ms while pressure is on.") var watchdogMilliseconds = 200
    @Option(name: .customLong("ceiling"), help: "The board's ceiling for a zone, ZONE=MMHG (repeatable; default: the hard ceilings).") var ceilings: [String] = []
    @Option(name: .customLong("boot-counter"), help: "Boot counter to report (default: random per start).") var bootCounter: UInt16?
    @Option(name: .customLong("disable-duty"), help: "TEST ONLY: do not perform this duty (watchdog, ceilings, stop-button).") var disabled: [String] = []

    func run() throws {
        let parts = tcp.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = Int(parts[1]), (0...65_535).contains(port) else {
            throw ValidationError("--tcp: expected HOST:PORT, got \"\(tcp)\"")
        }
        var options = ReferenceController.Options()
        options.unit = unit
        options.watchdogMilliseconds = watchdogMilliseconds
        if let bootCounter { options.bootCounter = bootCounter }
        for entry in ceilings {
            let kv = entry.split(separator: "=")
            guard kv.count == 2, let zone = Zone(rawValue: String(kv[0])), let value = Double(kv[1]), value > 0 else {
                throw ValidationError("--ceiling: expected ZONE=MMHG with ZONE one of \(Zone.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(entry)\"")
            }
            options.ceilingsMMHg[zone] = value
        }
        for name in disabled {
            guard let duty = ControllerDuties.Duty(rawValue: name) else {
                throw ValidationError("--disable-duty: expected one of \(ControllerDuties.Duty.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(name)\"")
            }
            options.disabled.insert(duty)
        }
        let controller = try ReferenceController(host: String(parts[0]), port: port, options: options)
        say("listening on \(parts[0]):\(controller.port)")
        while let line = readLine() {
            say(Self.handle(line, controller))
        }
        // stdin closed: serve until killed.
        while true { sleep(3600) }
    }

    private func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    static func handle(_ line: String, _ controller: ReferenceController) -> String {
        let words = line.split(separator: " ").map(String.init)
        switch words.first {
        case "press": controller.setStopButton(true); return "ok"
        case "letgo": controller.setStopButton(false); return "ok"
        case "freeze": controller.setFrozen(true); return "ok"
        case "thaw": controller.setFrozen(false); return "ok"
        case "drop": controller.dropClient(); return "ok"
        case "fault":
            if words.count == 3, words[1] == "actuator", let zone = Zone(rawValue: words[2]) {
                controller.simulator.inject(.actuatorFailure(zone)); return "ok"
            }
            if words.count == 2, words[1] == "clear" { controller.simulator.clearAllFaults(); return "ok" }
            return "error: expected `fault actuator ZONE` or `fault clear`"
        case "status":
            let s = controller.snapshot
            return "status released=\(s.released) faults=\(s.faults) stop_latched=\(s.stopLatched) commands=\(s.commandsAccepted) client=\(s.clientConnected)"
        case nil: return "error: empty line"
        default: return "error: unknown command \"\(words[0])\"; known: press, letgo, freeze, thaw, drop, fault, status"
        }
    }
}

/// `massager-controller check --tcp HOST:PORT`: the conformance check of a
/// controller's duties; one PASS/FAIL line per duty, exit 1 if any failed.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a controller's duties (ceilings, watchdog, stop button) over Modbus TCP; one PASS/FAIL line each, exit 1 on a failure.",
        discussion: "The stop-button check prints `ACTION: press the stop button` and later `ACTION: let go of the stop button` and waits for the controller to report it.")

    @Option(help: "The controller's HOST:PORT.") var tcp: String
    @Option(help: "Modbus unit id.") var unit = 1
    @Option(name: .customLong("timeout-ms"), help: "Response timeout per transaction (ms).") var timeoutMilliseconds = 50
    @Option(name: .customLong("button-wait-s"), help: "How long to wait for the stop button after asking (s).") var buttonWaitSeconds = 30
    @Option(name: .customLong("duty"), help: "Check only these duties (repeatable): ceilings, watchdog, stop-button. Default: all.") var duties: [String] = []

    func run() throws {
        let parts = tcp.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = Int(parts[1]), (1...65_535).contains(port) else {
            throw ValidationError("--tcp: expected HOST:PORT, got \"\(tcp)\"")
        }
        var selected: [ControllerDuties.Duty] = []
        for name in duties {
            guard let duty = ControllerDuties.Duty(rawValue: name) else {
                throw ValidationError("--duty: expected one of \(ControllerDuties.Duty.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(name)\"")
            }
            selected.append(duty)
        }
        let settings = LinkSettings(transport: .tcp(host: String(parts[0]), port: port), unit: unit, timeoutMilliseconds: timeoutMilliseconds)
        let check = ConformanceCheck(settings: settings, buttonWaitSeconds: buttonWaitSeconds) { FileHandle.standardOutput.write(Data("ACTION: \($0)\n".utf8)) }
        let results: [ConformanceCheck.Result]
        do { results = try check.run(selected.isEmpty ? ControllerDuties.Duty.allCases : selected) } catch {
            FileHandle.standardError.write(Data("massager-controller check: \(error.message)\n".utf8))
            throw ExitCode(2)
        }
        for result in results { FileHandle.standardOutput.write(Data("\(result)\n".utf8)) }
        if results.contains(where: { !$0.passed }) { throw ExitCode(1) }
    }
}

/// `massager-controller bench --tcp HOST:PORT`: the link's cost per tick
/// (docs/BENCHMARKS.md).
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Time one tick's read + write against a controller, paced at 20 ms, as the engine makes them.")

    @Option(help: "The controller's HOST:PORT.") var tcp: String
    @Option(help: "Ticks to time.") var ticks = 1000
    @Option(name: .customLong("timeout-ms"), help: "Response timeout per transaction (ms).") var timeoutMilliseconds = 8

    func run() throws {
        let parts = tcp.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = Int(parts[1]), (1...65_535).contains(port) else {
            throw ValidationError("--tcp: expected HOST:PORT, got \"\(tcp)\"")
        }
        let settings = LinkSettings(transport: .tcp(host: String(parts[0]), port: port), timeoutMilliseconds: timeoutMilliseconds)
        do {
            let figures = try LinkBenchmark.run(settings: settings, ticks: ticks)
            FileHandle.standardOutput.write(Data("\(figures)\n".utf8))
        } catch {
            FileHandle.standardError.write(Data("massager-controller bench: \(error.message)\n".utf8))
            throw ExitCode(1)
        }
    }
}
