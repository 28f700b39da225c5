import FleetProtocol
import FleetSettings
import FleetTestSupport
import Foundation
import MassageAgent
import Testing

@Suite("hardware: settings in agent.yaml")
struct HardwareSettingsTests {
    func load(_ hardware: String) throws(ConfigurationError) -> AgentConfiguration {
        let dir = try! TemporaryDirectory(prefix: "agent-hardware")
        let file = dir.url.appendingPathComponent("agent.yaml")
        try! "site: clinic-a\ndevice: m-1\ndata_dir: data\n\(hardware)\n".write(to: file, atomically: true, encoding: .utf8)
        return try AgentConfiguration.load(file: file)
    }

    func problems(_ hardware: String) -> [String] {
        do { _ = try load(hardware); return [] } catch { return error.problems.map { "\($0.key): \($0.message)" } }
    }

    @Test("simulated stays the default; modbus-tcp and modbus-rtu are read with their defaults")
    func kinds() throws {
        #expect(try load("").hardware == .simulated)
        #expect(try load("hardware: {kind: modbus-tcp, host: 10.0.0.2}").hardware
            == .modbusTCP(host: "10.0.0.2", port: 502, unit: 1, timeoutMilliseconds: 8))
        #expect(try load("hardware: {kind: modbus-tcp, host: 10.0.0.2, port: 1502, unit: 7, timeout_ms: 12}").hardware
            == .modbusTCP(host: "10.0.0.2", port: 1502, unit: 7, timeoutMilliseconds: 12))
        #expect(try load("hardware: {kind: modbus-rtu, device: /dev/ttyUSB0, baud: 57600, parity: even, unit: 2}").hardware
            == .modbusRTU(device: "/dev/ttyUSB0", baud: 57600, parity: "even", unit: 2, timeoutMilliseconds: 8))
    }

    @Test("every bad hardware key is named")
    func badKeys() {
        #expect(problems("hardware: {kind: modbus-tcp}").contains { $0.hasPrefix("hardware.host:") })
        #expect(problems("hardware: {kind: modbus-tcp, host: h, port: 70000}").contains { $0.hasPrefix("hardware.port:") })
        #expect(problems("hardware: {kind: modbus-tcp, host: h, unit: 0}").contains { $0.hasPrefix("hardware.unit:") })
        #expect(problems("hardware: {kind: modbus-tcp, host: h, timeout_ms: 0}").contains { $0.hasPrefix("hardware.timeout_ms:") })
        #expect(problems("hardware: {kind: modbus-tcp, host: h, device: /dev/ttyS0}").contains { $0.hasPrefix("hardware.device: not a setting of hardware kind modbus-tcp") })
        #expect(problems("hardware: {kind: modbus-rtu}").contains { $0.hasPrefix("hardware.device:") })
        #expect(problems("hardware: {kind: modbus-rtu, device: ttyUSB0}").contains { $0.hasPrefix("hardware.device:") })
        #expect(problems("hardware: {kind: modbus-rtu, device: /dev/ttyUSB0, baud: 12345}").contains { $0.hasPrefix("hardware.baud:") })
        #expect(problems("hardware: {kind: modbus-rtu, device: /dev/ttyUSB0, parity: mark}").contains { $0.hasPrefix("hardware.parity:") })
        #expect(problems("hardware: {kind: modbus-rtu, device: /dev/ttyUSB0, host: h}").contains { $0.hasPrefix("hardware.host:") })
        #expect(problems("hardware: {kind: simulated, host: h}").contains { $0.hasPrefix("hardware.host:") })
        #expect(problems("hardware: {kind: canbus}").contains { $0.hasPrefix("hardware.kind:") && $0.contains("modbus-tcp") })
        #expect(problems("hardware: {kind: modbus-tcp, host: h, speed: 3}").contains { $0.contains("hardware.speed") })
    }
}
