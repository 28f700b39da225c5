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
        subcommands: [Serve.self])
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
