import FleetTestSupport
import Foundation
import FleetProtocol
import FleetSettings
@testable import MassageAgent
import Testing

@Suite("Agent configuration file")
struct ConfigurationTests {
    func load(_ yaml: String, overrides: AgentOverrides = .init()) throws(ConfigurationError) -> AgentConfiguration {
        let dir = try! TemporaryDirectory(prefix: "agent-config")
        let file = dir.url.appendingPathComponent("agent.yaml")
        try! yaml.write(to: file, atomically: true, encoding: .utf8)
        return try AgentConfiguration.load(file: file, overrides: overrides)
    }

    let minimal = """
        site: clinic-a
        device: m-1
        data_dir: data
        """

    @Test("the shipped example configuration loads")
    func shippedExample() throws {
        let repo = AgentProcess.repositoryRoot
        let config = try AgentConfiguration.load(file: repo.appendingPathComponent("Config/agent.yaml"))
        #expect(config.site.rawValue == "clinic-north")
        #expect(config.programsDirectory.path == repo.appendingPathComponent("Config/programs").standardizedFileURL.path)
        #expect(config.limits.maxSessionMinutes == 20)
    }

    @Test("relative paths resolve against the file; flags override the file")
    func overrides() throws {
        let config = try load(minimal + "\nbroker: {host: broker.local, port: 1884}\nspeed: 2\n",
                              overrides: AgentOverrides(device: "m-2", broker: "127.0.0.1:2883", speed: 50))
        #expect(config.device.rawValue == "m-2")
        #expect(config.broker.host == "127.0.0.1" && config.broker.port == 2883)
        #expect(config.speed == 50)
        #expect(config.dataDirectory.lastPathComponent == "data")
        #expect(config.clientID == "agent-clinic-a-m-2")
    }

    @Test("every problem is reported at once, each naming its key and what was expected")
    func problems() {
        let error = #expect(throws: ConfigurationError.self) {
            try load("""
                site: Clinic A
                data_dir: d
                broker: {port: 99999, hostt: x}
                telemetry_interval_s: -1
                limits: {max_session_minutes: 45}
                log_level: loud
                """)
        }
        let keys = Set(error?.problems.map(\.key) ?? [])
        #expect(keys.isSuperset(of: ["site", "device", "broker.port", "broker.hostt", "telemetry_interval_s", "log_level"]))
        #expect(keys.contains { $0.hasPrefix("limits.") })
        let port = error?.problems.first { $0.key == "broker.port" }
        #expect(port?.message == "expected an integer from 1 to 65535, got 99999")
        let unknown = error?.problems.first { $0.key == "broker.hostt" }
        #expect(unknown?.message.contains("unknown key; expected one of:") == true)
        #expect(error?.description.contains("broker.port") == true)
    }

    @Test("a bad --broker flag names the flag")
    func badBrokerFlag() {
        let error = #expect(throws: ConfigurationError.self) { try load(minimal, overrides: AgentOverrides(broker: "localhost")) }
        #expect(error?.problems.map(\.key) == ["--broker"])
    }

    @Test("limits may only tighten: raising one above the hard limit is refused")
    func limitsOnlyTighten() {
        let error = #expect(throws: ConfigurationError.self) {
            try load(minimal + "\nlimits: {pressure_ceiling_mmhg: {shin: 500}}\n")
        }
        #expect(error?.problems.contains { $0.key.hasPrefix("limits.") && $0.key.contains("shin") } == true)
    }
}
