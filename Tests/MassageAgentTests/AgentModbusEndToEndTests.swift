import FleetTestSupport
import Foundation
import Testing

/// `massage-agent` driving `massager-controller` (the reference controller
/// board) over Modbus TCP on loopback and over Modbus RTU on a
/// pseudo-terminal line, both as processes. At speed 1: the
/// controller's physics run in real time.
extension AgentEndToEndTests {
    @Test("massage-agent runs a full session against massager-controller over Modbus TCP, and the controller's stop button aborts the next pain_signal")
    func modbusTCPSession() async throws {
        let controller = try ProcessRunner.start(
            BuildProducts.executable(named: "massager-controller"),
            arguments: ["serve", "--tcp", "127.0.0.1:0", "--watchdog-ms", "300"], standardInput: true)
        defer { controller.kill() }
        try await controller.waitForOutput("listening on 127.0.0.1:")
        let port = try #require(controller.standardOutput().split(separator: "\n").first
            .flatMap { $0.split(separator: ":").last }.flatMap { Int($0) })

        try await AgentRig.run(agent: { options in
            options.speed = nil
            options.hardwareSeed = nil
            options.settings = ["hardware": ["kind": "modbus-tcp", "host": "127.0.0.1", "port": .int(port), "timeout_ms": 50]]
        }) { rig in
            try await Self.sessionThenStopButton(rig, controller)
        }
    }

    @Test("massage-agent runs a full session against massager-controller over Modbus RTU on a pseudo-terminal line, and the controller's stop button aborts the next pain_signal")
    func modbusRTUSession() async throws {
        let controller = try ProcessRunner.start(
            BuildProducts.executable(named: "massager-controller"),
            arguments: ["serve", "--rtu-pty", "--watchdog-ms", "300"], standardInput: true)
        defer { controller.kill() }
        try await controller.waitForOutput("agent device: ")
        let device = try #require(controller.standardOutput().split(separator: "\n")
            .first { $0.hasPrefix("agent device: ") }.map { String($0.dropFirst("agent device: ".count)) })

        try await AgentRig.run(agent: { options in
            options.speed = nil
            options.hardwareSeed = nil
            options.settings = ["hardware": ["kind": "modbus-rtu", "device": .string(device), "baud": 115_200, "timeout_ms": 50]]
        }) { rig in
            try await Self.sessionThenStopButton(rig, controller)
        }
    }

    /// A 3 s session that completes, then a long one that the stop button
    /// on the controller (its stdin) aborts `pain_signal`.
    private static func sessionThenStopButton(_ rig: AgentRig, _ controller: ProcessRunner) async throws {
            let steps: WireJSON = ["steps": [["target": "calf", "technique": "compression", "intensity": 4, "duration_s": 3]]]
            let first = try await rig.probe.send(action: "start_session", params: steps, to: rig.device)
            try #require(first.ok, "start_session was refused: \(first)")
            let firstID = try #require(first.result?["session_id"]?.string)
            _ = try await rig.probe.waitForEvent(type: "session_completed", sessionID: firstID, on: rig.device, timeout: .seconds(30))

            let long: WireJSON = ["steps": [["target": "calf", "technique": "compression", "intensity": 4, "duration_s": 60]]]
            let second = try await rig.probe.send(action: "start_session", params: long, to: rig.device)
            try #require(second.ok, "start_session was refused: \(second)")
            let secondID = try #require(second.result?["session_id"]?.string)
            _ = try await rig.probe.waitForEvent(type: "session_started", sessionID: secondID, on: rig.device)
            try controller.write("press\n")
            let aborted = try await rig.probe.waitForEvent(type: "session_aborted", sessionID: secondID, on: rig.device, timeout: .seconds(10))
            #expect(aborted.json?["reason"]?.string == "pain_signal")
    }
}
