import FleetProtocol
import FleetSettings

/// Which massager the agent drives (`hardware:` in agent.yaml). The agent
/// library only carries the choice; `massage-agent` opens the link
/// (MassagerLink) so that nothing else links libmodbus.
public enum HardwareSettings: Sendable, Equatable {
    /// The built-in simulator (the default).
    case simulated
    /// A controller board over Modbus TCP.
    case modbusTCP(host: String, port: Int, unit: Int, timeoutMilliseconds: Int)
    /// A controller board over Modbus RTU (serial).
    case modbusRTU(device: String, baud: Int, parity: String, unit: Int, timeoutMilliseconds: Int)

    public static let kinds = ["simulated", "modbus-tcp", "modbus-rtu"]
    static let keys: Set<String> = ["kind", "seed", "host", "port", "unit", "timeout_ms", "device", "baud", "parity"]
    static let tcpKeys: Set<String> = ["host", "port"]
    static let rtuKeys: Set<String> = ["device", "baud", "parity"]
    static let baudRates = [1200, 2400, 4800, 9600, 19_200, 38_400, 57_600, 115_200, 230_400, 460_800, 921_600]
    static let parities = ["none", "even", "odd"]

    /// Reads `hardware.*`, naming the key of every problem.
    static func read(_ reader: inout ConfigReader) -> HardwareSettings {
        let kind = reader.string("hardware.kind") ?? "simulated"
        let foreign: Set<String>
        switch kind {
        case "simulated": foreign = tcpKeys.union(rtuKeys).union(["unit", "timeout_ms"])
        case "modbus-tcp": foreign = rtuKeys.union(["seed"])
        case "modbus-rtu": foreign = tcpKeys.union(["seed"])
        default:
            reader.problem("hardware.kind", "expected one of \(kinds.joined(separator: ", ")), got \"\(kind)\"")
            return .simulated
        }
        for key in foreign.sorted() where reader.has("hardware.\(key)") {
            reader.problem("hardware.\(key)", "not a setting of hardware kind \(kind)")
        }
        let unit = reader.int("hardware.unit", in: 1...247) ?? 1
        // One tick reads and writes: two timeouts must fit the 20 ms tick on a good link (docs/hardware.md).
        let timeout = reader.int("hardware.timeout_ms", in: 1...1000) ?? 8
        switch kind {
        case "modbus-tcp":
            let host = reader.string("hardware.host")
            if host == nil { reader.problem("hardware.host", "required for modbus-tcp: the controller's address, e.g. 192.168.10.2") }
            if let h = host, h.isEmpty { reader.problem("hardware.host", "must not be empty") }
            let port = reader.int("hardware.port", in: 1...65_535) ?? 502
            return .modbusTCP(host: host ?? "", port: port, unit: unit, timeoutMilliseconds: timeout)
        case "modbus-rtu":
            let device = reader.string("hardware.device")
            if device == nil { reader.problem("hardware.device", "required for modbus-rtu: the serial device, e.g. /dev/ttyUSB0") }
            if let d = device, !d.hasPrefix("/") { reader.problem("hardware.device", "expected an absolute device path such as /dev/ttyUSB0, got \"\(d)\"") }
            var baud = 115_200
            if let b = reader.int("hardware.baud", in: 1...10_000_000) {
                if baudRates.contains(b) { baud = b } else { reader.problem("hardware.baud", "expected one of \(baudRates.map(String.init).joined(separator: ", ")), got \(b)") }
            }
            var parity = "none"
            if let p = reader.string("hardware.parity") {
                if parities.contains(p) { parity = p } else { reader.problem("hardware.parity", "expected one of none, even, odd; got \"\(p)\"") }
            }
            return .modbusRTU(device: device ?? "", baud: baud, parity: parity, unit: unit, timeoutMilliseconds: timeout)
        default:
            return .simulated
        }
    }
}
