/// Where the controller is and how to talk to it.
public struct LinkSettings: Sendable, Equatable, CustomStringConvertible {
    public enum Parity: String, Sendable, Equatable, CaseIterable {
        case none, even, odd
        var code: CChar { switch self { case .none: CChar(UInt8(ascii: "N")); case .even: CChar(UInt8(ascii: "E")); case .odd: CChar(UInt8(ascii: "O")) } }
    }

    public enum Transport: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case rtu(device: String, baud: Int, parity: Parity)
    }

    public var transport: Transport
    /// Modbus unit (slave) id, 1…247.
    public var unit: Int = 1
    /// Response timeout per transaction (ms). One tick does a read and a
    /// write, so twice this must stay under the 20 ms tick (docs/hardware.md).
    public var timeoutMilliseconds: Int = 8
    /// First wait before reconnecting a lost link; doubles up to `maxBackoffMilliseconds`.
    public var minBackoffMilliseconds: Int = 100
    public var maxBackoffMilliseconds: Int = 2000
    /// Failed transactions in a row that are retried on the next tick
    /// before the link is reported as a hardware fault: a bad CRC or a
    /// lost answer now and then on a serial line is noise, not a fault.
    /// Meanwhile the engine sees the last good readings (at most this many
    /// ticks old) and the controller's own stop button, ceilings and
    /// watchdog act regardless. A lost connection faults at once.
    public var toleratedFailures: Int = 2

    public init(transport: Transport, unit: Int = 1, timeoutMilliseconds: Int = 8) {
        self.transport = transport
        self.unit = unit
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    public var description: String {
        switch transport {
        case .tcp(let host, let port): "modbus-tcp \(host):\(port) unit \(unit)"
        case .rtu(let device, let baud, let parity): "modbus-rtu \(device) \(baud) baud parity \(parity.rawValue) unit \(unit)"
        }
    }

    /// Baud rates libmodbus accepts for RTU.
    public static let baudRates: Set<Int> = [1200, 2400, 4800, 9600, 19_200, 38_400, 57_600, 115_200, 230_400, 460_800, 921_600]
}
