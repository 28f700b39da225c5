import FleetSettings
import FleetTestSupport
import Foundation
import MassageAgent
import Testing

// fleet-sim's thin device (issue 23, point 4): the wire contract without an
// engine, against a real mosquitto (the shared fixture).
@Suite("Thin simulated device", .timeLimit(.minutes(2)), .tags(.e2e))
struct ThinDeviceTests {

    @Test("a thin device comes online, answers a command and reports a desired config through a real broker")
    func answersCommandAndConfig() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        let probe = try await FleetProbe.connect(to: broker, name: "console")
        let directory = try TemporaryDirectory(prefix: "thin-device")  // the configuration asks for one; a thin device writes nothing
        var overrides = AgentOverrides(site: "north", device: "thin-1", broker: "\(broker.host):\(broker.port)", dataDirectory: directory.url.path)
        overrides.logLevel = "warning"
        var config = try AgentConfiguration.load(file: nil, overrides: overrides)
        config.broker.allowPlaintext = true
        config.telemetryIntervalSeconds = 1
        let device = try ThinDevice(configuration: config, programs: ["calf-release"])
        let run = Task { try await device.run() }
        let address = FleetProbe.Device(site: "north", device: "thin-1")

        try await probe.waitForStatus(address, state: "online")
        let ping = try await probe.send(action: "ping", to: address)
        #expect(ping.ok, "\(ping)")
        let start = try await probe.send(action: "start_session", params: ["program": "calf-release"], to: address)
        #expect(start.ok, "\(start)")
        #expect(start.result?["program"]?.string == "calf-release")
        if let session = start.result?["session_id"]?.string {
            try await probe.waitForEvent(type: "session_completed", sessionID: session, on: address)
        }
        let refused = try await probe.send(action: "pause_session", to: address)
        #expect(!refused.ok)

        try await probe.publishDesired(version: 3, config: ["telemetry_interval_s": 2], to: address)
        let reported = try await probe.waitForReported(address, version: 3, state: "applied")
        #expect(reported["applied_version"]?.int == 3, "\(reported)")
        try await probe.waitForMessage(on: address, kind: "telemetry", timeout: .seconds(10), "telemetry") { _ in true }

        run.cancel()
        _ = try? await run.value
        await probe.close()
    }
}
