import CModbus
import Glibc

/// One libmodbus client context (`modbus_t *`), freed with the object.
///
/// `@unchecked Sendable`: a libmodbus context is not thread-safe, and this
/// one is only ever used inside `ModbusMassager`'s `Mutex` (created, used,
/// closed and dropped under it), so no two threads touch it at once.
final class ModbusContext: @unchecked Sendable {
    private let ctx: OpaquePointer
    let settings: LinkSettings

    init(_ settings: LinkSettings) throws(ModbusLinkError) {
        let made: OpaquePointer?
        switch settings.transport {
        case .tcp(let host, let port):
            made = modbus_new_tcp(host, Int32(port))
        case .rtu(let device, let baud, let parity):
            made = modbus_new_rtu(device, Int32(baud), parity.code, 8, 1)
        }
        guard let made else { throw ModbusLinkError.fromErrno("\(settings): cannot create a libmodbus context") }
        ctx = made
        self.settings = settings
        let micros = UInt32(max(1, settings.timeoutMilliseconds) * 1000)
        modbus_set_response_timeout(ctx, micros / 1_000_000, micros % 1_000_000)
        modbus_set_byte_timeout(ctx, micros / 1_000_000, micros % 1_000_000)
        if modbus_set_slave(ctx, Int32(settings.unit)) == -1 {
            modbus_free(ctx)
            throw ModbusLinkError(.settings, "\(settings): unit must be 1…247")
        }
    }

    deinit {
        modbus_close(ctx)
        modbus_free(ctx)
    }

    func connect() throws(ModbusLinkError) {
        if modbus_connect(ctx) == -1 { throw ModbusLinkError.fromErrno("cannot connect to \(settings)") }
    }

    func close() { modbus_close(ctx) }

    /// Drops whatever a late answer left in the receive buffer.
    func flush() { _ = modbus_flush(ctx) }

    func read(_ address: Int32, count: Int32, into buffer: inout [UInt16]) throws(ModbusLinkError) {
        let n = buffer.withUnsafeMutableBufferPointer { modbus_read_registers(ctx, address, count, $0.baseAddress) }
        if n != count { throw n == -1 ? ModbusLinkError.fromErrno("read \(count) registers at \(address)") : ModbusLinkError(.badFrame, "read \(count) registers at \(address): got \(n)") }
    }

    func write(_ address: Int32, _ values: [UInt16]) throws(ModbusLinkError) {
        let n = values.withUnsafeBufferPointer { modbus_write_registers(ctx, address, Int32(values.count), $0.baseAddress) }
        if n != values.count { throw n == -1 ? ModbusLinkError.fromErrno("write \(values.count) registers at \(address)") : ModbusLinkError(.badFrame, "write \(values.count) registers at \(address): got \(n)") }
    }
}
