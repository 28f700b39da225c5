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

    /// After a failed transaction on a serial line: waits until the line
    /// has been quiet for `quietMilliseconds` (at most `maxMilliseconds` in
    /// all), throwing away what arrives, then flushes. An answer that came
    /// after the timeout would otherwise be read as the answer to the next
    /// request, and every transaction after it would fail (the classic RTU
    /// desync); libmodbus's own recovery sleeps a whole response timeout,
    /// longer than a tick allows.
    func drain(quietMilliseconds: Int32, maxMilliseconds: Int) {
        let fd = modbus_get_socket(ctx)
        guard fd >= 0 else { return }
        let deadline = ContinuousClock.now + .milliseconds(maxMilliseconds)
        var scratch = [UInt8](repeating: 0, count: 256)
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while ContinuousClock.now < deadline, poll(&entry, 1, quietMilliseconds) > 0 {
            let n = scratch.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
        }
        _ = modbus_flush(ctx)
    }

    func read(_ address: Int32, count: Int32, into buffer: inout [UInt16]) throws(ModbusLinkError) {
        let n = buffer.withUnsafeMutableBufferPointer { modbus_read_registers(ctx, address, count, $0.baseAddress) }
        if n != count { throw n == -1 ? ModbusLinkError.fromErrno("read \(count) registers at \(address)") : ModbusLinkError(.badFrame, "read \(count) registers at \(address): got \(n)") }
    }

    func write(_ address: Int32, _ values: [UInt16]) throws(ModbusLinkError) {
        let n = values.withUnsafeBufferPointer { modbus_write_registers(ctx, address, Int32(values.count), $0.baseAddress) }
        if n != values.count { throw n == -1 ? ModbusLinkError.fromErrno("write \(values.count) registers at \(address)") : ModbusLinkError(.badFrame, "write \(values.count) registers at \(address): got \(n)") }
    }
}
