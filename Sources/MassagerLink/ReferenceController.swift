import CModbus
import Foundation
import Glibc
import MassageEngine
import Synchronization

/// The reference controller board: serves `RegisterMap` over Modbus TCP
/// or RTU (a serial device, or one end of a `PseudoSerialLine`) with
/// libmodbus's server API, with `SimulatedMassager`'s physics behind
/// it and `ControllerDuties` in charge of the outputs. One thread owns the
/// libmodbus context, the register mapping, the duties and the physics;
/// it waits at most `pollMilliseconds` for a request, so the duties run
/// at least that often whatever the agent does. Other threads only flip
/// `Controls` (stop button, freeze, stop) and read `Snapshot`.
///
/// Over TCP, one client at a time (the agent); a new connection replaces
/// the old. Over RTU the line is always there; requests for another unit
/// and frames with a bad CRC are dropped, as on a bus.
public final class ReferenceController: Sendable {
    public struct Options: Sendable {
        public var ceilingsMMHg = HardLimits.ceilingsMMHg
        public var watchdogMilliseconds = 200
        public var unit = 1
        /// Changes on every start unless given.
        public var bootCounter = UInt16.random(in: 1...UInt16.max)
        /// Test-only: duties this controller does not perform.
        public var disabled: Set<ControllerDuties.Duty> = []
        public var seed: UInt64 = 1
        public var pollMilliseconds = 2
        public init() {}
    }

    /// What the controller is doing, for tests and the stdin protocol.
    public struct Snapshot: Sendable, Equatable {
        public var released = true
        public var faults: UInt16 = 0
        public var stopLatched = false
        public var commandsAccepted = 0
        public var requestsServed = 0
        /// True pressures in the cells (not what the sensors say).
        public var pressuresMMHg = ZoneValues<Double>(repeating: 0)
        /// Highest true pressure seen per zone since start.
        public var peakMMHg = ZoneValues<Double>(repeating: 0)
        /// Seconds since start of the last release the controller made by itself (watchdog, button, overpressure).
        public var lastOwnRelease: Double?
        /// Seconds since start of the last accepted command (a new sequence number).
        public var lastCommandAt: Double?
        public var clientConnected = false
    }

    private struct Controls {
        var stop = false
        var frozen = false
        var dropClient = false
    }

    public let options: Options
    public let simulator: SimulatedMassager
    /// The TCP port it listens on (the one the kernel gave for port 0); 0 over RTU.
    public let port: Int
    private let controls = Mutex(Controls())
    private let published = Mutex(Snapshot())
    private let finished = Mutex(false)
    /// The setpoints (tenths of mmHg, as on the wire) of the last commands
    /// the controller applied, newest last (at most 10,000).
    private let applied = Mutex<[ZoneValues<UInt16>]>([])
    private let start = ContinuousClock.now

    /// Listens on `host:port` (port 0: any free port) and starts serving.
    public convenience init(host: String = "127.0.0.1", port: Int = 0, options: Options = Options()) throws(ModbusLinkError) {
        try self.init(server: ServerContext(host: host, port: port, unit: options.unit), options: options)
    }

    /// Opens the serial `device` (Modbus RTU, 8 data bits, 1 stop bit) and starts serving on it.
    public convenience init(rtuDevice device: String, baud: Int = 115_200, parity: LinkSettings.Parity = .none, options: Options = Options()) throws(ModbusLinkError) {
        try self.init(server: ServerContext(rtuDevice: device, baud: baud, parity: parity, unit: options.unit), options: options)
    }

    private init(server: ServerContext, options: Options) {
        self.options = options
        simulator = SimulatedMassager(seed: options.seed)
        self.port = server.port
        let duties = ControllerDuties(ceilingsMMHg: options.ceilingsMMHg, watchdogSeconds: Double(options.watchdogMilliseconds) / 1000,
                                      disabled: options.disabled)
        let thread = Thread { [self] in
            // A controller board runs its loop deterministically; give the
            // stand-in a real-time priority where allowed (root, or
            // RLIMIT_RTPRIO), so a loaded machine does not starve its watchdog.
            var parameters = sched_param(sched_priority: 20)
            _ = pthread_setschedparam(pthread_self(), SCHED_FIFO, &parameters)
            serve(server, duties: duties)
        }
        thread.name = "controller"
        thread.start()
    }

    /// Seconds since the controller started (the time base of `Snapshot`).
    public var now: Double { seconds(ContinuousClock.now - start) }

    public var snapshot: Snapshot { published.withLock { $0 } }

    /// The setpoints of the commands it applied (tenths of mmHg, as
    /// written), oldest first: what a test compares with what was sent.
    public var appliedSetpoints: [ZoneValues<UInt16>] { applied.withLock { $0 } }

    /// The person presses (true) or lets go of (false) the stop button.
    public func setStopButton(_ pressed: Bool) {
        if pressed { simulator.inject(.painButton) } else { simulator.clear(.painButton) }
    }

    /// Stops answering requests (the link looks dead) while the duties and physics go on.
    public func setFrozen(_ frozen: Bool) { controls.withLock { $0.frozen = frozen } }

    /// Closes the agent's connection (a cut cable).
    public func dropClient() { controls.withLock { $0.dropClient = true } }

    /// Stops serving and closes every socket; returns once the thread has ended.
    public func stop() {
        controls.withLock { $0.stop = true }
        let deadline = ContinuousClock.now + .seconds(2)
        while !finished.withLock({ $0 }) && ContinuousClock.now < deadline { usleep(1000) }
    }

    private func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    // MARK: - The controller's thread

    private func serve(_ server: ServerContext, duties initial: ControllerDuties) {
        var duties = initial
        var snapshot = Snapshot()
        var query = [UInt8](repeating: 0, count: Int(MODBUS_TCP_MAX_ADU_LENGTH))
        server.setStatic(options: options)
        while true {
            let c = controls.withLock { c in
                let copy = c
                c.dropClient = false
                return copy
            }
            if c.stop { break }
            if c.dropClient { server.closeClient() }
            let t = now

            // The board's own sensors and duties, before any request.
            let readings = simulator.read(engineTime: t)
            let truth = simulator.snapshot().pressuresMMHg
            if let zone = readings.hardwareFault?.zone { duties.actuatorFailed(zone) }
            if case .release = duties.step(now: t, buttonHeld: readings.stopButtonPressed, measured: truth) {
                simulator.releaseAll()
                snapshot.lastOwnRelease = now  // after the release, not when the turn began
            }
            server.publish(readings, duties: duties)

            // At most one request per turn, waiting at most the poll interval.
            if let length = server.receive(into: &query, waitMilliseconds: options.pollMilliseconds, frozen: c.frozen) {
                if let write = server.reply(query, length: length) , write {
                    let cmd = server.command()
                    let before = duties.commandsAccepted
                    let action = duties.command(sequence: cmd.sequence, setpoints: cmd.setpoints, technique: cmd.technique, motorDuty: cmd.duty,
                                                releaseAll: cmd.release, buttonHeld: readings.stopButtonPressed, now: now)
                    if duties.commandsAccepted > before { snapshot.lastCommandAt = now }
                    switch action {
                    case .none: break
                    case .release: simulator.releaseAll()
                    case .apply(let command):
                        simulator.apply(command)
                        let raw = ZoneValues { RegisterMap.encodeTenths(command.pressuresMMHg[$0]) }
                        applied.withLock { log in
                            if log.count >= 10_000 { log.removeFirst(5_000) }
                            log.append(raw)
                        }
                    }
                    server.publish(readings, duties: duties)
                }
                snapshot.requestsServed += 1
            }
            snapshot.released = duties.released
            snapshot.faults = duties.faults
            snapshot.stopLatched = duties.stopLatched
            snapshot.commandsAccepted = duties.commandsAccepted
            snapshot.pressuresMMHg = truth
            for z in Zone.allCases { snapshot.peakMMHg[z] = max(snapshot.peakMMHg[z], truth[z]) }
            snapshot.clientConnected = server.hasClient
            let copy = snapshot
            published.withLock { $0 = copy }
        }
        server.shutdown()
        finished.withLock { $0 = true }
    }
}

/// The server side of libmodbus: the listening socket, one client socket
/// and the register mapping.
///
/// `@unchecked Sendable`: created on the caller's thread and then handed to
/// the controller's thread, which is the only one to use it from then on.
private final class ServerContext: @unchecked Sendable {
    private let ctx: OpaquePointer
    private let mapping: UnsafeMutablePointer<modbus_mapping_t>
    private var listenSocket: Int32
    private var client: Int32 = -1
    /// The serial line's fd (RTU); -1 over TCP.
    private var serial: Int32 = -1
    let port: Int

    /// Modbus RTU on a serial device: no listening, the line is the client.
    init(rtuDevice device: String, baud: Int, parity: LinkSettings.Parity, unit: Int) throws(ModbusLinkError) {
        guard LinkSettings.baudRates.contains(baud) else { throw ModbusLinkError(.settings, "baud \(baud) is not one libmodbus supports: \(LinkSettings.baudRates.sorted())") }
        guard let ctx = modbus_new_rtu(device, Int32(baud), parity.code, 8, 1) else { throw ModbusLinkError.fromErrno("cannot create an RTU server context for \(device)") }
        guard let mapping = modbus_mapping_new(0, 0, RegisterMap.registerCount, 0) else {
            modbus_free(ctx)
            throw ModbusLinkError.fromErrno("cannot allocate the register mapping")
        }
        modbus_set_slave(ctx, Int32(unit))
        if modbus_connect(ctx) == -1 {
            let error = ModbusLinkError.fromErrno("cannot open the serial device \(device)")
            modbus_mapping_free(mapping)
            modbus_free(ctx)
            throw error
        }
        self.ctx = ctx
        self.mapping = mapping
        listenSocket = -1
        serial = modbus_get_socket(ctx)
        port = 0
        // A frame that starts must finish within a few character times; a
        // half frame (noise, a cut line) is dropped.
        modbus_set_byte_timeout(ctx, 0, 20_000)
        modbus_set_indication_timeout(ctx, 0, 50_000)
    }

    init(host: String, port: Int, unit: Int) throws(ModbusLinkError) {
        guard let ctx = modbus_new_tcp(host, Int32(port)) else { throw ModbusLinkError.fromErrno("cannot create a server context for \(host):\(port)") }
        guard let mapping = modbus_mapping_new(0, 0, RegisterMap.registerCount, 0) else {
            modbus_free(ctx)
            throw ModbusLinkError.fromErrno("cannot allocate the register mapping")
        }
        modbus_set_slave(ctx, Int32(unit))
        let s = modbus_tcp_listen(ctx, 1)
        if s == -1 {
            let error = ModbusLinkError.fromErrno("cannot listen on \(host):\(port)")
            modbus_mapping_free(mapping)
            modbus_free(ctx)
            throw error
        }
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &length) } }
        self.ctx = ctx
        self.mapping = mapping
        self.listenSocket = s
        self.port = Int(UInt16(bigEndian: address.sin_port))
        // A request that starts must finish quickly; a half frame is dropped.
        modbus_set_byte_timeout(ctx, 0, 50_000)
        modbus_set_indication_timeout(ctx, 0, 50_000)
    }

    deinit {
        shutdown()
        modbus_mapping_free(mapping)
        modbus_free(ctx)
    }

    var hasClient: Bool { client != -1 || serial != -1 }

    private var registers: UnsafeMutablePointer<UInt16> { mapping.pointee.tab_registers }

    func setStatic(options: ReferenceController.Options) {
        registers[Int(RegisterMap.identity)] = RegisterMap.identityMagic
        registers[Int(RegisterMap.version)] = RegisterMap.mapVersion
        registers[Int(RegisterMap.bootCounter)] = options.bootCounter
        for z in Zone.allCases { registers[Int(RegisterMap.ceiling(z))] = RegisterMap.encodeTenths(options.ceilingsMMHg[z]) }
        registers[Int(RegisterMap.watchdogMilliseconds)] = UInt16(clamping: options.watchdogMilliseconds)
    }

    func publish(_ r: SensorReadings, duties: ControllerDuties) {
        var status: UInt16 = 0
        if duties.stopLatched { status |= RegisterMap.StatusBits.stopLatched }
        if duties.released { status |= RegisterMap.StatusBits.released }
        registers[Int(RegisterMap.status)] = status
        registers[Int(RegisterMap.faults)] = duties.faults
        registers[Int(RegisterMap.sequenceEcho)] = duties.lastSequence ?? 0
        for z in Zone.allCases {
            registers[Int(RegisterMap.pressure(z))] = RegisterMap.encodeSignedTenths(r.pressuresMMHg[z])
            registers[Int(RegisterMap.pressureSamples(z))] = UInt16(truncatingIfNeeded: r.pressureSamples[z])
        }
        registers[Int(RegisterMap.motorTemperature)] = RegisterMap.encodeSignedTenths(r.motorTemperatureC)
        registers[Int(RegisterMap.temperatureSamples)] = UInt16(truncatingIfNeeded: r.temperatureSample)
    }

    func command() -> (sequence: UInt16, setpoints: ZoneValues<Double>, technique: Technique?, duty: Double, release: Bool) {
        (registers[Int(RegisterMap.sequence)],
         ZoneValues { Double(self.registers[Int(RegisterMap.setpoint($0))]) / 10 },
         RegisterMap.technique(code: registers[Int(RegisterMap.technique)]),
         Double(registers[Int(RegisterMap.motorDuty)]) / 1000,
         registers[Int(RegisterMap.releaseAll)] != 0)
    }

    /// Accepts a new client and reads one request, waiting at most `waitMilliseconds`.
    /// Returns the request's length, or nil when there was none.
    func receive(into query: inout [UInt8], waitMilliseconds: Int, frozen: Bool) -> Int? {
        if serial != -1 { return receiveSerial(into: &query, waitMilliseconds: waitMilliseconds, frozen: frozen) }
        var fds = [pollfd(fd: listenSocket, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: frozen ? -1 : client, events: Int16(POLLIN), revents: 0)]
        let ready = poll(&fds, 2, Int32(waitMilliseconds))
        guard ready > 0 else { return nil }
        if fds[0].revents & Int16(POLLIN) != 0 {
            var s = listenSocket
            let accepted = modbus_tcp_accept(ctx, &s)  // sets the context's socket to the new one
            if accepted != -1 {
                if client != -1 { Glibc.close(client) }
                client = accepted
                // The controller answers at once: no Nagle delay on replies.
                var one: Int32 = 1
                setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            return nil
        }
        guard !frozen, client != -1, fds[1].revents != 0 else { return nil }
        modbus_set_socket(ctx, client)
        let n = query.withUnsafeMutableBufferPointer { modbus_receive(ctx, $0.baseAddress) }
        if n == -1 {
            if errno == ETIMEDOUT || errno > Int32(MODBUS_ENOBASE) { _ = modbus_flush(ctx); return nil }
            closeClient()
            return nil
        }
        return n > 0 ? Int(n) : nil
    }

    private func receiveSerial(into query: inout [UInt8], waitMilliseconds: Int, frozen: Bool) -> Int? {
        var entry = pollfd(fd: serial, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, Int32(waitMilliseconds)) > 0 else { return nil }
        if frozen {
            // A dead board: what arrives is read and never answered.
            _ = modbus_flush(ctx)
            return nil
        }
        let n = query.withUnsafeMutableBufferPointer { modbus_receive(ctx, $0.baseAddress) }
        if n == -1 {
            // A bad CRC, a half frame: drop what is in the line and wait
            // for the next request (the master retries on its side).
            _ = modbus_flush(ctx)
            return nil
        }
        return n > 0 ? Int(n) : nil  // 0: a request for another unit
    }

    /// Answers a request: reads anywhere in the map; writes only to the
    /// command block (exception 2 elsewhere); other functions exception 1.
    /// Returns whether it was an accepted write.
    func reply(_ query: [UInt8], length: Int) -> Bool? {
        let header = Int(modbus_get_header_length(ctx))
        guard length > header + 4 else { return nil }
        let function = Int32(query[header])
        let address = Int32(query[header + 1]) << 8 | Int32(query[header + 2])
        let count = Int32(query[header + 3]) << 8 | Int32(query[header + 4])
        let commandEnd = RegisterMap.commandStart + RegisterMap.commandCount
        var exception: UInt32?
        var write = false
        switch function {
        case Int32(MODBUS_FC_READ_HOLDING_REGISTERS):
            if address < 0 || address + count > RegisterMap.registerCount { exception = UInt32(MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS) }
        case Int32(MODBUS_FC_WRITE_MULTIPLE_REGISTERS):
            if address < RegisterMap.commandStart || address + count > commandEnd { exception = UInt32(MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS) } else { write = true }
        case Int32(MODBUS_FC_WRITE_SINGLE_REGISTER):
            if address < RegisterMap.commandStart || address >= commandEnd { exception = UInt32(MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS) } else { write = true }
        default:
            exception = UInt32(MODBUS_EXCEPTION_ILLEGAL_FUNCTION)
        }
        let rc = query.withUnsafeBufferPointer { q in
            if let exception { return modbus_reply_exception(ctx, q.baseAddress, exception) }
            return modbus_reply(ctx, q.baseAddress, Int32(length), mapping)
        }
        if rc == -1 {
            if serial == -1 { closeClient() } else { _ = modbus_flush(ctx) }
            return nil
        }
        return write
    }

    func closeClient() {
        if client != -1 { Glibc.close(client); client = -1 }
    }

    func shutdown() {
        closeClient()
        if serial != -1 { modbus_close(ctx); serial = -1 }
        if listenSocket != -1 { Glibc.close(listenSocket); listenSocket = -1 }
    }
}
