import CModbus
import Foundation
import Glibc
import MassageEngine
import Synchronization

/// A serial line between two programs on one machine, for Modbus RTU
/// without hardware: two pseudo-terminals whose masters a thread joins
/// byte for byte, as a null-modem cable would. The controller opens one
/// end (`controllerDevice`), the agent the other (`agentDevice`); both are
/// ordinary tty paths that libmodbus opens and configures like
/// /dev/ttyUSB0.
///
/// It is also where line noise is made: with `setNoise(perMille:)` the
/// thread flips one bit in that share of the chunks it carries (seeded, so
/// a run can be repeated), which the receiver's CRC check must catch.
public final class PseudoSerialLine: Sendable {
    public let controllerDevice: String
    public let agentDevice: String

    private struct Ends: Sendable {
        var controllerMaster: Int32
        var agentMaster: Int32
        /// Our own open slave fds: a master whose slave nobody has open
        /// reads EIO; held open, the line is up before either side opens it.
        var controllerSlave: Int32
        var agentSlave: Int32
    }

    private let ends: Ends
    private let noisePerMille = Atomic<Int>(0)
    private let corrupted = Atomic<Int>(0)
    private let carried = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let finished = Atomic<Bool>(false)

    /// Opens both pseudo-terminals (raw, no echo) and starts carrying bytes.
    public init(seed: UInt64 = 1) throws(ModbusLinkError) {
        let (cm, cs, cPath) = try Self.openPair()
        let am: Int32, asl: Int32, aPath: String
        do throws(ModbusLinkError) {
            (am, asl, aPath) = try Self.openPair()
        } catch {
            Glibc.close(cm); Glibc.close(cs)
            throw error
        }
        controllerDevice = cPath
        agentDevice = aPath
        ends = Ends(controllerMaster: cm, agentMaster: am, controllerSlave: cs, agentSlave: asl)
        let thread = Thread { [self] in
            // The wire does not wait for a busy machine: the same real-time
            // priority as the controller's loop where allowed.
            var parameters = sched_param(sched_priority: 20)
            _ = pthread_setschedparam(pthread_self(), SCHED_FIFO, &parameters)
            carry(seed: seed)
        }
        thread.name = "serial-line"
        thread.start()
    }

    /// Flip one bit in `perMille` of every thousand chunks carried (0: a clean line).
    public func setNoise(perMille: Int) { noisePerMille.store(min(1000, max(0, perMille)), ordering: .relaxed) }

    /// Chunks carried and chunks corrupted so far.
    public var counts: (carried: Int, corrupted: Int) {
        (carried.load(ordering: .relaxed), corrupted.load(ordering: .relaxed))
    }

    /// Stops carrying and closes every end; returns once the thread has ended.
    public func close() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let deadline = ContinuousClock.now + .seconds(2)
        while !finished.load(ordering: .acquiring) && ContinuousClock.now < deadline { usleep(1000) }
        for fd in [ends.controllerMaster, ends.agentMaster, ends.controllerSlave, ends.agentSlave] { Glibc.close(fd) }
    }

    private static func openPair() throws(ModbusLinkError) -> (master: Int32, slave: Int32, path: String) {
        let master = posix_openpt(O_RDWR | O_NOCTTY)
        guard master >= 0 else { throw ModbusLinkError(.connection, "cannot open a pseudo-terminal: \(String(cString: strerror(errno)))") }
        var name = [CChar](repeating: 0, count: 128)
        guard grantpt(master) == 0, unlockpt(master) == 0, ptsname_r(master, &name, name.count) == 0 else {
            let text = String(cString: strerror(errno))
            Glibc.close(master)
            throw ModbusLinkError(.connection, "cannot set up a pseudo-terminal: \(text)")
        }
        let path = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let slave = open(path, O_RDWR | O_NOCTTY)
        guard slave >= 0 else {
            let text = String(cString: strerror(errno))
            Glibc.close(master)
            throw ModbusLinkError(.connection, "cannot open \(path): \(text)")
        }
        var mode = termios()
        tcgetattr(slave, &mode)
        cfmakeraw(&mode)
        tcsetattr(slave, TCSANOW, &mode)
        _ = fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK)
        return (master, slave, path)
    }

    private func carry(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var buffer = [UInt8](repeating: 0, count: 512)
        var fds = [pollfd(fd: ends.controllerMaster, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: ends.agentMaster, events: Int16(POLLIN), revents: 0)]
        while !stopping.load(ordering: .acquiring) {
            fds[0].revents = 0
            fds[1].revents = 0
            guard poll(&fds, 2, 20) > 0 else { continue }
            for (from, to) in [(0, ends.agentMaster), (1, ends.controllerMaster)] where fds[from].revents & Int16(POLLIN) != 0 {
                let n = buffer.withUnsafeMutableBytes { Glibc.read(fds[from].fd, $0.baseAddress, $0.count) }
                guard n > 0 else { continue }
                carried.add(1, ordering: .relaxed)
                let noise = noisePerMille.load(ordering: .relaxed)
                if noise > 0, Int(random.next() % 1000) < noise {
                    let index = Int(random.next() % UInt64(n))
                    buffer[index] ^= UInt8(1) << UInt8(random.next() % 8)
                    corrupted.add(1, ordering: .relaxed)
                }
                var sent = 0
                while sent < n, !stopping.load(ordering: .acquiring) {
                    let w = buffer[sent..<n].withUnsafeBytes { Glibc.write(to, $0.baseAddress, $0.count) }
                    if w > 0 { sent += w } else if errno == EAGAIN || errno == EINTR { usleep(100) } else { break }
                }
            }
        }
        finished.store(true, ordering: .releasing)
    }
}
