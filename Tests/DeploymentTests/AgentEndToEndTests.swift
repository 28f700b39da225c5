import FleetTestSupport
import Foundation
import Mosquitto
import Testing

/// The built `massage-agent`, run as an operator would run it: with the
/// agent.yaml provision.sh wrote, against the shipped broker config.
@Suite("massage-agent with a provisioned config", .tags(.e2e))
struct AgentEndToEndTests {
    @Test("the agent comes online with its generated config, answers a command, and is cut off by revoke")
    func provisionedAgent() async throws {
        let agentExecutable = try BuildProducts.executable(named: "massage-agent")
        let fleet = try await ProvisionedFleet.create()
        let broker = try await fleet.startBroker()
        defer { broker.stopNow() }
        let data = try TemporaryDirectory(prefix: "agent-data")
        let provisioned = try await fleet.device(
            "clinic-north", "massager-01", on: broker,
            extra: ["--data-dir", data.file("state").path, "--programs-dir", Deploy.programs.path])
        let device = try provisioned.installed(into: data)
        let (console, inbox) = try await fleet.consoleSubscriber(broker)
        let pid = try #require(broker.processIdentifier)

        let agent = try ProcessRunner.start(
            agentExecutable, arguments: ["--config", device.agentConfig.path], outputDirectory: data.url)
        defer { agent.kill() }
        try await waitUntil(timeout: .seconds(30), "the agent to publish status online") {
            if !agent.isRunning {
                throw FixtureError("massage-agent exited (\(agent.exitStatus.map(\.description) ?? "?")): \(agent.standardError())")
            }
            return inbox.messages(on: device.topic("status")).contains { json($0.payload)?["state"] as? String == "online" }
        }

        // A command through the ACLs both ways: the console writes cmd, the
        // agent reads it and writes the reply to its own reply topic of
        // the console instance (the only reply topic the ACL lets it write).
        let replyTopic = "\(Deploy.root)/_console/reply/console/clinic-north/massager-01"
        try await console.publish(
            device.topic("cmd"), payload: bytes(#"{"id": "cmd-deploy-1", "action": "ping"}"#), qos: .atLeastOnce,
            properties: MQTTProperties(responseTopic: replyTopic, correlationData: bytes("cmd-deploy-1")))
        let reply = try await waitForValue(timeout: .seconds(10), "the agent's reply") {
            inbox.messages(on: replyTopic).first
        }
        #expect(reply.properties.correlationData == bytes("cmd-deploy-1"))
        #expect(json(reply.payload)?["ok"] as? Bool == true, "\(text(reply.payload))")

        // Revoke while it runs: the broker (same process) drops it and
        // refuses its reconnects (its certificate is on the CRL now).
        let logged = agent.standardError().count
        try await fleet.revoke("clinic-north", "massager-01", on: broker)
        try await broker.waitForLog(containing: "Client \(device.identity) disconnected")
        try await waitUntil(timeout: .seconds(30), "the agent's reconnect to be refused") {
            // The agent logs each refused attempt with the broker's address
            // ("connecting to localhost:PORT …" or "TLS connection to localhost:PORT … was reset").
            // The first "down" line is the dropped connection; a second one is a refused reconnect.
            let since = String(agent.standardError().dropFirst(logged))
            return since.components(separatedBy: "broker connection down").count > 2 && since.contains("localhost:\(device.settings.port)")
        }
        #expect(broker.log().contains("certificate revoked") || broker.log().contains("certificate verify failed"))
        #expect(agent.isRunning, "the agent keeps running (and its sessions with it) without the broker")
        #expect(broker.processIdentifier == pid)

        let status = try await agent.stop(gracePeriod: .seconds(10))
        #expect(status == .exited(0), "\(agent.standardError())")
        await console.shutdown()
    }

    private func json(_ payload: [UInt8]) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(payload))) as? [String: Any]
    }
}
