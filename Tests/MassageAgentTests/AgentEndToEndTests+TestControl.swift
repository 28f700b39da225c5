import FleetTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

// The simulator's test control (hardware.test_control, test only), in the
// built agent: what `fleet-bench pain` relies on.
extension AgentEndToEndTests {
    @Test("test control: a press during a locally started session is released after the press, and the session ends aborted pain_signal")
    func testControlPainPress() async throws {
        let directory = try TemporaryDirectory(prefix: "test-control")
        defer { directory.remove() }
        let socket = directory.file("control.sock").path
        try await AgentRig.run(agent: { $0.settings = ["hardware": ["test_control": .string(socket)]] }) { rig in
            let hand = try await waitForValue(timeout: .seconds(10), "the agent's test control socket accepts") {
                try? TestControlClient(path: socket)
            }
            let started = try hand.call("start calf-release")
            let sessionID = try #require(started.dropFirst().first, "no session id in \(started)")
            try await waitUntil(timeout: .seconds(10), "the session puts pressure on the leg") {
                (Double(try hand.call("pressure")[1]) ?? 0) >= 2
            }
            let pressed = try #require(Int64(try hand.call("press")[1]))
            let timing = try await waitForValue(timeout: .seconds(5), "the engine released the hardware") { () throws -> [Int64]? in
                let words = try hand.call("release 0").dropFirst().compactMap { Int64($0) }
                return words.count == 3 && words[2] != 0 ? words : nil
            }
            #expect(timing[0] == pressed)
            #expect(timing[1] >= pressed, "the tick that read the press came after it: \(timing)")
            #expect(timing[2] >= timing[1], "the release came after that read: \(timing)")
            let last = try hand.call("last-release").dropFirst().compactMap { Int64($0) }
            #expect(last.count == 2 && last[0] >= timing[2] && last[1] >= 1, "last-release \(last)")

            let aborted = try await rig.probe.waitForEvent(type: "session_aborted", sessionID: sessionID, on: rig.device, timeout: .seconds(10))
            #expect(aborted["reason"]?.string == "pain_signal", "\(aborted)")

            // While the button is held a new session is refused; once it is let go, one starts.
            let refused = try hand.call("start calf-release", allowError: true)
            #expect(refused.first == "error" && refused.dropFirst().first == "unsafe", "\(refused)")
            _ = try hand.call("unpress")
            try await waitUntil(timeout: .seconds(5), "a local start is accepted after the button is let go") {
                try hand.call("start calf-release", allowError: true).first == "ok"
            }
            let ticks = try hand.call("ticks")
            #expect(ticks.contains { $0.hasPrefix("count=") && $0 != "count=0" }, "\(ticks)")
            #expect(try hand.call("frobnicate", allowError: true).first == "error")

            // A graceful stop ends the server too, and removes its socket.
            let exit = try await rig.agent.stop()
            #expect(exit == .exited(0), "\(exit)")
        }
        #expect(!FileManager.default.fileExists(atPath: socket), "the socket file is removed at shutdown")
    }
}


extension AgentEndToEndTests {
    @Test("on the wire: after a pain signal a remote start is refused unsafe with the lockout, telemetry says locked_out and where it hurt, a start at the device still works; a latched fault is refused clear_fault until healthy, then cleared")
    func lockoutAndLatchOnTheWire() async throws {
        let directory = try TemporaryDirectory(prefix: "test-control")
        defer { directory.remove() }
        let socket = directory.file("control.sock").path
        // An hour of lockout: at the rig's speed 100 that is 36 s of real time.
        try await AgentRig.run(agent: { $0.settings = ["hardware": ["test_control": .string(socket)], "limits": ["pain_lockout_s": 3600]] }) { rig in
            let probe = rig.probe
            let device = rig.device
            let hand = try await waitForValue(timeout: .seconds(10), "the agent's test control socket accepts") {
                try? TestControlClient(path: socket)
            }
            // Pain during a session started at the device.
            let sessionID = try #require(try hand.call("start calf-release").dropFirst().first)
            try await waitUntil(timeout: .seconds(10), "pressure on the leg") { (Double(try hand.call("pressure")[1]) ?? 0) >= 2 }
            _ = try hand.call("press")
            let aborted = try await probe.waitForEvent(type: "session_aborted", sessionID: sessionID, on: device, timeout: .seconds(10))
            #expect(aborted["reason"]?.string == "pain_signal", "\(aborted)")
            _ = try hand.call("unpress")

            let refused = try await probe.send(action: "start_session", params: ["program": "calf-release"], to: device)
            #expect(refused.errorCode == "unsafe", "\(refused)")
            #expect(refused.errorMessage?.contains("pain signal") == true && refused.errorMessage?.contains("s more") == true, "\(refused)")
            let mark = probe.mark()
            let telemetry = try await probe.waitForMessage(on: device, kind: "telemetry", after: mark, timeout: .seconds(30), "telemetry saying locked_out") {
                $0["session_state"]?.string == "locked_out"
            }
            #expect(telemetry["lockout"]?["zone"]?.string == "calf" && telemetry["lockout"]?["point"]?.string == "sp6", "\(telemetry)")
            // The person at the device may start; end it remotely.
            let local = try #require(try hand.call("start sole-vitality").dropFirst().first)
            let stop = try await probe.send(action: "stop_session", params: ["session_id": .string(local)], to: device)
            #expect(stop.ok, "\(stop)")
            try await probe.waitForEvent(type: "session_aborted", sessionID: local, on: device, timeout: .seconds(10))

            // A latched fault: refused while unhealthy, cleared once healthy.
            _ = try hand.call("fault actuator heel")
            try await probe.waitForEvent(type: "fault_raised", on: device, timeout: .seconds(10)) { $0["fault"]?.string == "hardware_fault" }
            let early = try await probe.send(action: "clear_fault", to: device)
            #expect(early.errorCode == "unsafe" && early.errorMessage?.contains("no fault reads healthy yet") == true, "\(early)")
            _ = try hand.call("clear-faults")
            let cleared = try await waitForValue(timeout: .seconds(10), "clear_fault succeeds once the heel reads healthy") { () async throws -> FleetProbe.Reply? in
                let reply = try await probe.send(action: "clear_fault", to: device)
                return reply.ok ? reply : nil
            }
            #expect(cleared.result?["cleared"]?.array?.first?["fault"]?.string == "hardware_fault", "\(cleared)")
            try await probe.waitForEvent(type: "fault_cleared", on: device, timeout: .seconds(10)) { $0["fault"]?.string == "hardware_fault" }
            let none = try await probe.send(action: "clear_fault", to: device)
            #expect(none.errorCode == "not_found", "\(none)")
            rig.expectWellFormedWire()
        }
    }
}
