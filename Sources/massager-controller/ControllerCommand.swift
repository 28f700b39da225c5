import ArgumentParser
import Foundation
import MassageEngine
import MassagerLink

/// `massager-controller serve --tcp HOST:PORT | --rtu DEVICE | --rtu-pty`:
/// the reference controller board (docs/hardware.md). It prints
/// `listening on HOST:PORT` (TCP), `serving modbus-rtu on DEVICE` (RTU) or,
/// with `--rtu-pty`, `agent device: PATH` (the other end of a pseudo-terminal
/// line it made) once it serves, then reads commands on stdin, one a line,
/// and answers each with one line: `press` / `letgo` (the stop button;
/// `press-timed` answers once the board released by itself, with how long
/// that took),
/// `freeze` / `thaw` (stop answering Modbus requests, resume), `drop` (close
/// the agent's connection, TCP), `noise PER_MILLE` (corrupt that share of
/// the chunks on a `--rtu-pty` line), `fault actuator ZONE`,
/// `fault frozen-sensor ZONE`, `fault runaway-pump ZONE`, `fault
/// stuck-valve`, `fault clear`, `status`.
@main
struct ControllerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "massager-controller",
        abstract: "The reference massager controller board: serves the MassageFleet register map over Modbus TCP or RTU with a simulated massager behind it.",
        subcommands: [Serve.self, Check.self, Bench.self])
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the register map until killed; test commands on stdin.")

    @Option(help: "Listen on HOST:PORT (port 0: any free port, printed).") var tcp: String?
    @Option(help: "Serve Modbus RTU on this serial device.") var rtu: String?
    @Flag(name: .customLong("rtu-pty"), help: "Serve Modbus RTU on a pseudo-terminal line it makes; prints the agent's end.") var rtuPty = false
    @Option(help: "RTU baud rate.") var baud = 115_200
    @Option(help: "RTU parity: none, even or odd.") var parity = "none"
    @Option(help: "Modbus unit id.") var unit = 1
    @Option(name: .customLong("watchdog-ms"), help: "Release by itself when no new command arrives within this many ms while pressure is on.") var watchdogMilliseconds = 200
    @Option(name: .customLong("ceiling"), help: "The board's ceiling for a zone, ZONE=MMHG (repeatable; default: the hard ceilings).") var ceilings: [String] = []
    @Option(name: .customLong("boot-counter"), help: "Boot counter to report (default: random per start).") var bootCounter: UInt16?
    @Option(name: .customLong("disable-duty"), help: "TEST ONLY: do not perform this duty (watchdog, ceilings, stop-button).") var disabled: [String] = []

    func validate() throws {
        guard [tcp != nil, rtu != nil, rtuPty].filter({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --tcp HOST:PORT, --rtu DEVICE or --rtu-pty")
        }
    }

    func run() throws {
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
        let controller: ReferenceController
        var line: PseudoSerialLine?
        if let tcp {
            let (host, port) = try LinkOptions.hostPort(tcp, option: "--tcp", allowZero: true)
            controller = try ReferenceController(host: host, port: port, options: options)
            say("listening on \(host):\(controller.port)")
        } else {
            let parity = try LinkOptions.parity(parity)
            let device: String
            if let rtu {
                device = rtu
            } else {
                let made = try PseudoSerialLine()
                line = made
                device = made.controllerDevice
            }
            controller = try ReferenceController(rtuDevice: device, baud: baud, parity: parity, options: options)
            say("serving modbus-rtu on \(device)")
            if let line { say("agent device: \(line.agentDevice)") }
        }
        while let text = readLine() {
            say(Self.handle(text, controller, line: line))
        }
        // stdin closed: serve until killed.
        while true { sleep(3600) }
    }

    private func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    static func handle(_ text: String, _ controller: ReferenceController, line: PseudoSerialLine? = nil) -> String {
        let words = text.split(separator: " ").map(String.init)
        switch words.first {
        case "noise":
            guard let line else { return "error: noise needs a --rtu-pty line" }
            guard words.count == 2, let perMille = Int(words[1]), (0...1000).contains(perMille) else { return "error: expected `noise PER_MILLE` (0…1000)" }
            line.setNoise(perMille: perMille)
            return "ok"
        case "press": controller.setStopButton(true); return "ok"
        case "press-timed":
            // Presses, then answers once the board released by itself:
            // its half of pain-to-release, on its own clock.
            let before = controller.snapshot.lastOwnRelease
            let pressed = controller.now
            controller.setStopButton(true)
            let deadline = pressed + 2
            while controller.now < deadline {
                if let released = controller.snapshot.lastOwnRelease, released != before, released >= pressed {
                    return "ok released_after_ms=" + String(format: "%.3f", (released - pressed) * 1000)
                }
                usleep(100)
            }
            return "error: no release within 2 s of the press"
        case "letgo": controller.setStopButton(false); return "ok"
        case "freeze": controller.setFrozen(true); return "ok"
        case "thaw": controller.setFrozen(false); return "ok"
        case "drop": controller.dropClient(); return "ok"
        case "fault":
            let zone = words.count == 3 ? Zone(rawValue: words[2]) : nil
            switch (words.dropFirst().first, zone) {
            case ("actuator", let zone?): controller.simulator.inject(.actuatorFailure(zone))
            case ("frozen-sensor", let zone?): controller.simulator.inject(.frozenPressureSensor(zone))
            case ("runaway-pump", let zone?): controller.simulator.inject(.runawayPump(zone: zone, mmHgPerSecond: 40))
            case ("stuck-valve", nil) where words.count == 2: controller.simulator.inject(.stuckDumpValve)
            case ("clear", nil) where words.count == 2: controller.simulator.clearAllFaults()
            default:
                return "error: expected `fault actuator ZONE`, `fault frozen-sensor ZONE`, `fault runaway-pump ZONE`, `fault stuck-valve` or `fault clear` (ZONE: \(Zone.allCases.map(\.rawValue).joined(separator: ", ")))"
            }
            return "ok"
        case "status":
            let s = controller.snapshot
            return "status released=\(s.released) faults=\(s.faults) stop_latched=\(s.stopLatched) commands=\(s.commandsAccepted) client=\(s.clientConnected)"
        case nil: return "error: empty line"
        default: return "error: unknown command \"\(words[0])\"; known: press, press-timed, letgo, freeze, thaw, drop, noise, fault, status"
        }
    }
}

/// `massager-controller check --tcp HOST:PORT | --rtu DEVICE`: the conformance check of a
/// controller's duties; one PASS/FAIL line per duty, exit 1 if any failed.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a controller's duties (ceilings, watchdog, stop button) over Modbus TCP or RTU; one PASS/FAIL line each, exit 1 on a failure.",
        discussion: "The stop-button check prints `ACTION: press the stop button` and later `ACTION: let go of the stop button` and waits for the controller to report it.")

    @OptionGroup var link: LinkOptions
    @Option(help: "Modbus unit id.") var unit = 1
    @Option(name: .customLong("timeout-ms"), help: "Response timeout per transaction (ms).") var timeoutMilliseconds = 50
    @Option(name: .customLong("button-wait-s"), help: "How long to wait for the stop button after asking (s).") var buttonWaitSeconds = 30
    @Option(name: .customLong("duty"), help: "Check only these duties (repeatable): ceilings, watchdog, stop-button. Default: all.") var duties: [String] = []

    func run() throws {
        var selected: [ControllerDuties.Duty] = []
        for name in duties {
            guard let duty = ControllerDuties.Duty(rawValue: name) else {
                throw ValidationError("--duty: expected one of \(ControllerDuties.Duty.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(name)\"")
            }
            selected.append(duty)
        }
        let settings = LinkSettings(transport: try link.transport(), unit: unit, timeoutMilliseconds: timeoutMilliseconds)
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

/// `massager-controller bench --tcp HOST:PORT | --rtu DEVICE`: the link's cost per tick
/// (docs/BENCHMARKS.md).
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Time one tick's read + write against a controller, paced at 20 ms, as the engine makes them.")

    @OptionGroup var link: LinkOptions
    @Option(help: "Ticks to time.") var ticks = 1000
    @Option(name: .customLong("timeout-ms"), help: "Response timeout per transaction (ms).") var timeoutMilliseconds = 8

    func run() throws {
        let settings = LinkSettings(transport: try link.transport(), timeoutMilliseconds: timeoutMilliseconds)
        do {
            let figures = try LinkBenchmark.run(settings: settings, ticks: ticks)
            FileHandle.standardOutput.write(Data("\(figures)\n".utf8))
        } catch {
            FileHandle.standardError.write(Data("massager-controller bench: \(error.message)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// Where a controller is, for `check` and `bench`: `--tcp HOST:PORT` or
/// `--rtu DEVICE` with `--baud` and `--parity`.
struct LinkOptions: ParsableArguments {
    @Option(help: "The controller's HOST:PORT (Modbus TCP).") var tcp: String?
    @Option(help: "The controller's serial device (Modbus RTU).") var rtu: String?
    @Option(help: "RTU baud rate.") var baud = 115_200
    @Option(help: "RTU parity: none, even or odd.") var parity = "none"

    func validate() throws {
        guard (tcp != nil) != (rtu != nil) else { throw ValidationError("give exactly one of --tcp HOST:PORT or --rtu DEVICE") }
    }

    func transport() throws -> LinkSettings.Transport {
        if let tcp {
            let (host, port) = try Self.hostPort(tcp, option: "--tcp", allowZero: false)
            return .tcp(host: host, port: port)
        }
        guard LinkSettings.baudRates.contains(baud) else {
            throw ValidationError("--baud: expected one of \(LinkSettings.baudRates.sorted().map(String.init).joined(separator: ", ")), got \(baud)")
        }
        return .rtu(device: rtu ?? "", baud: baud, parity: try Self.parity(parity))
    }

    static func hostPort(_ text: String, option: String, allowZero: Bool) throws -> (String, Int) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, let port = Int(parts[1]), ((allowZero ? 0 : 1)...65_535).contains(port) else {
            throw ValidationError("\(option): expected HOST:PORT, got \"\(text)\"")
        }
        return (String(parts[0]), port)
    }

    static func parity(_ text: String) throws -> LinkSettings.Parity {
        guard let parity = LinkSettings.Parity(rawValue: text) else {
            throw ValidationError("--parity: expected none, even or odd, got \"\(text)\"")
        }
        return parity
    }
}
