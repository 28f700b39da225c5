import FleetTestSupport
import Foundation
import Testing

// Desired/reported configuration, and start-up refusals.
extension AgentEndToEndTests {
    @Test("config: valid is applied; invalid is rejected with reasons; during a session it is pending, then applied when the session ends; one failing the self-check is rolled back")
    func desiredConfig() async throws {
        try await AgentRig.run { rig in
            let probe = rig.probe
            let device = rig.device

            // 1. Valid → applied, and in force.
            var mark = probe.mark()
            try await probe.publishDesired(
                version: 1, config: ["telemetry_interval_s": 2, "max_session_minutes": 15, "default_intensity": 4], to: device)
            let applied = try await probe.waitForReported(device, version: 1, state: "applied", after: mark)
            if let appliedVersion = applied["applied_version"] { #expect(appliedVersion.int == 1, "\(applied)") }
            let appliedEvent = try await probe.waitForEvent(type: "config_applied", on: device, after: mark) {
                $0["config_version"]?.int == 1
            }
            #expect(try await rig.status()["config_version"]?.int == 1)
            try await probe.waitForMessage(
                on: device, kind: "telemetry", after: appliedEvent.index, timeout: .seconds(10),
                "telemetry at the new 2 s interval"
            ) { $0["interval_s"]?.double == 2 }

            // 2. Invalid → rejected with every reason; the applied config stays.
            mark = probe.mark()
            try await probe.publishDesired(version: 2, config: ["colour": "blue", "max_session_minutes": 99], to: device)
            let rejected = try await probe.waitForReported(device, version: 2, state: "rejected", after: mark)
            let reasons = rejected["reasons"]?.array?.compactMap(\.string) ?? []
            #expect(reasons.contains { $0.contains("colour") }, "a reason names the unknown key: \(rejected)")
            #expect(reasons.contains { $0.contains("max_session_minutes") }, "a reason names the out-of-range key: \(rejected)")
            if let appliedVersion = rejected["applied_version"] { #expect(appliedVersion.int == 1, "\(rejected)") }
            let rejectedEvent = try await probe.waitForEvent(type: "config_rejected", on: device, after: mark) {
                $0["config_version"]?.int == 2
            }
            #expect(rejectedEvent["reasons"]?.array?.isEmpty == false, "\(rejectedEvent)")
            #expect(try await rig.status()["config_version"]?.int == 1, "a rejected config is not applied")

            // 3. During a session → pending; applied once the session ends.
            mark = probe.mark()
            let program = try BuiltInProgram.load("sole-vitality")
            let sessionID = try await rig.startSession(program.id)
            try await probe.waitForEvent(type: "session_started", sessionID: sessionID, on: device)
            try await probe.publishDesired(version: 3, config: ["max_session_minutes": 20, "default_intensity": 3], to: device)
            let pending = try await probe.waitForReported(device, version: 3, state: "pending", after: mark)
            let completed = try await probe.waitForEvent(
                type: "session_completed", sessionID: sessionID, on: device, after: mark,
                timeout: .seconds(program.wallSeconds * 4 + 15))
            #expect(pending.index < completed.index, "pending is reported while the session runs")
            let appliedLater = try await probe.waitForReported(device, version: 3, state: "applied", after: mark)
            #expect(appliedLater.index > completed.index, "applied only after the session ended")
            let appliedLaterEvent = try await probe.waitForEvent(type: "config_applied", on: device, after: mark) {
                $0["config_version"]?.int == 3
            }
            if let a = appliedLaterEvent.seq, let c = completed.seq {
                #expect(a > c, "config_applied (seq \(a)) follows session_completed (seq \(c))")
            }
            #expect(try await rig.status()["config_version"]?.int == 3)

            // 4. Fails the self-check → rolled back. Tightening the calf
            // ceiling to 15 mmHg is allowed, but then no calf program (every
            // calf level is ≥ 16 mmHg) can run any more.
            mark = probe.mark()
            try await probe.publishDesired(version: 4, config: ["pressure_ceiling_mmhg": ["calf": 15]], to: device)
            let rolledBack = try await probe.waitForReported(device, version: 4, state: "rolled_back", after: mark)
            let rollbackReasons = rolledBack["reasons"]?.array?.compactMap(\.string) ?? []
            #expect(rollbackReasons.contains { $0.contains("calf-release") },
                    "the reasons name the program that fails under the new limits: \(rolledBack)")
            if let appliedVersion = rolledBack["applied_version"] { #expect(appliedVersion.int == 3, "\(rolledBack)") }
            try await probe.waitForEvent(type: "config_rolled_back", on: device, after: mark) { $0["config_version"]?.int == 4 }
            #expect(try await rig.status()["config_version"]?.int == 3, "the previous config is back")
            #expect(probe.reportedConfig(device)?["state"]?.string == "rolled_back")
            // …and so are its limits: calf-release runs again.
            let calfSession = try await rig.startSession("calf-release")
            let stop = try await probe.send(action: "stop_session", params: ["session_id": .string(calfSession)], to: device)
            #expect(stop.ok, "\(stop)")
            try await probe.waitForEvent(type: "session_aborted", sessionID: calfSession, on: device, timeout: .seconds(15))

            // 5. The whole documented range is valid: max_session_minutes 1–30
            // (30 is the hard limit; the agent's own default of 20 is not a limit).
            mark = probe.mark()
            try await probe.publishDesired(version: 5, config: ["max_session_minutes": 30], to: device)
            let full = try await probe.waitForMessage(
                on: device, kind: "config/reported", after: mark, "config/reported version 5"
            ) { $0["version"]?.int == 5 && $0["state"]?.string != "pending" }
            #expect(full["state"]?.string == "applied", "max_session_minutes 30 is within 1–30: \(full)")
            rig.expectWellFormedWire()
        }
    }

    /// A way to start the agent wrongly, and what its complaint must name.
    struct BadStart: Sendable, CustomTestStringConvertible {
        var name: String
        /// Laid over a valid config (see `valid`); nil: the valid config.
        var settings: WireJSON?
        var arguments: [String] = []
        /// Each must appear in stderr.
        var mentions: [String]

        var testDescription: String { name }

        /// A config that is fine except for the broker, where nothing
        /// listens: an agent that wrongly started would not get far.
        static let valid: WireJSON = [
            "site": "clinic-e2e", "device": "massager-1", "data_dir": "data",
            "programs_dir": .string(AgentProcess.builtInProgramsDirectory.path),
            "broker": ["host": "127.0.0.1", "port": 9, "allow_plaintext": true],
        ]

        static let all: [BadStart] = [
            BadStart(name: "broker.port out of range", settings: ["broker": ["port": 70000]], mentions: ["broker.port", "65535"]),
            BadStart(name: "an unknown key", settings: ["colour": "blue"], mentions: ["colour"]),
            BadStart(name: "no data_dir", settings: ["data_dir": nil], mentions: ["data_dir"]),
            BadStart(name: "a device id that is not an id", settings: ["device": "Massager #1"], mentions: ["device"]),
            BadStart(name: "a limit above the hard limit", settings: ["limits": ["max_session_minutes": 99]],
                     mentions: ["max_session_minutes", "30"]),
            BadStart(name: "unknown hardware", settings: ["hardware": ["kind": "real-motor"]], mentions: ["hardware.kind", "simulated"]),
            BadStart(name: "--broker without a port", arguments: ["--broker", "localhost"], mentions: ["--broker", "HOST:PORT"]),
            BadStart(name: "--speed not a number", arguments: ["--speed", "fast"], mentions: ["--speed"]),
            BadStart(name: "--log-level unknown", arguments: ["--log-level", "loud"], mentions: ["log-level", "loud"]),
            BadStart(name: "an unknown flag", arguments: ["--colour", "blue"], mentions: ["--colour"]),
            // Issue 20, item 12: no silent plain-text connection.
            BadStart(name: "no broker.tls and no broker.allow_plaintext", settings: ["broker": ["allow_plaintext": nil]],
                     mentions: ["broker.tls", "ca_file", "broker.allow_plaintext: true", "clear text"]),
            BadStart(name: "broker.allow_plaintext: false and no broker.tls", settings: ["broker": ["allow_plaintext": false]],
                     mentions: ["broker.tls", "broker.allow_plaintext: true"]),
            BadStart(name: "broker.allow_plaintext together with broker.tls",
                     settings: ["broker": ["tls": ["ca_file": "/etc/massage-agent/ca.crt"]]],
                     mentions: ["broker.allow_plaintext", "remove"]),
        ]
    }

    @Test("a bad config or flag exits with status 2, naming the key and what was expected", arguments: BadStart.all)
    func badStartExitsWithStatus2(_ bad: BadStart) async throws {
        let config = AgentProcess.yaml(bad.settings.map { BadStart.valid.merging($0) } ?? BadStart.valid)
        let run = try await AgentProcess.runToCompletion(config: config, arguments: bad.arguments, timeout: .seconds(30))
        #expect(run.status == .exited(2), "\(bad.name): \(run)\nconfig:\n\(config)")
        for mention in bad.mentions {
            #expect(run.standardError.contains(mention), "\(bad.name): stderr should name \"\(mention)\": \(run.standardError)")
        }
    }

    @Test("broker.allow_plaintext: true lets the agent connect without TLS, and every start says so in a warning (issue 20, item 12)")
    func plaintextOptInWarnsAtEveryStart() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        let probe = try await FleetProbe.connect(to: broker)
        let agent = try await AgentProcess.start(.init(device: "plaintext-1", speed: 10), broker: broker, probe: probe)
        defer { agent.stopNow() }
        let warning = "broker.allow_plaintext is true: connecting to 127.0.0.1:\(broker.port) WITHOUT TLS"
        #expect(agent.standardError().contains(warning), "\(agent.diagnostics())")
        #expect(agent.standardError().contains("warning"), "logged at warning level: \(agent.diagnostics())")
        try await agent.stop()
        _ = try await agent.restart(probe: probe)
        #expect(agent.standardError().contains(warning), "the restart warns again: \(agent.diagnostics())")
        await probe.close()
    }
}
