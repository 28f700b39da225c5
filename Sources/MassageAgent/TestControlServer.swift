import Foundation
import Glibc
import Logging
import MassageEngine
import ServiceLifecycle
import Synchronization

/// TEST ONLY: serves a `SimulatorTestControl` on a UNIX socket, one client at
/// a time, one line per request and one line per reply (docs/operations.md,
/// "Simulator test control"):
///
///     press                 -> ok PRESS_NS
///     unpress               -> ok
///     release [TIMEOUT_MS]  -> ok PRESS_NS SEEN_NS RELEASE_NS   (waits up to TIMEOUT_MS, default 0, max 10000; 0 = not yet)
///     last-release          -> ok LAST_RELEASE_NS COUNT
///     ticks                 -> ok count=N p50_us=… p99_us=… p999_us=… max_us=… beyond_100ms=N
///     reset-ticks           -> ok
///     start PROGRAM         -> ok SESSION_ID | error CODE MESSAGE  (as the person at the device starts it)
///     session               -> ok idle|running
///     pressure              -> ok MAX_MMHG                        (what the simulated cells really hold)
///     now                   -> ok NS
///     fault actuator ZONE   -> ok                                 (the zone's actuator fails; the hardware reports it)
///     clear-faults          -> ok                                 (every injected simulator fault is gone)
///
/// Anything else gets `error bad_request …`. Times are CLOCK_MONOTONIC ns.
///
/// The socket is served by a thread of its own (blocking `poll`/`read`), so
/// neither the control thread nor Swift's cooperative pool ever waits for a
/// client. A `Service` of the agent's ServiceGroup: it stops on graceful
/// shutdown and removes its socket file.
public struct TestControlServer: Service {
    /// What the person at the device can do (the agent's local panel).
    public struct Panel: Sendable {
        public var start: @Sendable (String) throws(EngineError) -> SessionID
        public var inSession: @Sendable () -> Bool
        public init(start: @escaping @Sendable (String) throws(EngineError) -> SessionID, inSession: @escaping @Sendable () -> Bool) {
            self.start = start
            self.inSession = inSession
        }
    }

    public let path: String
    public let control: SimulatorTestControl
    public let panel: Panel
    public let logger: Logger

    public init(path: String, control: SimulatorTestControl, panel: Panel, logger: Logger) {
        self.path = path
        self.control = control
        self.panel = panel
        self.logger = logger
    }

    public func run() async throws {
        let listener = try Self.listen(path)
        logger.warning("simulator test control listening (test only: anyone who can open the socket presses the pain button)",
                       metadata: ["test_control.socket": "\(path)"])
        let stop = ServerStop()
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                    let thread = Thread {
                        serve(listener, stop: stop)
                        done.resume()
                    }
                    thread.name = "test-control"
                    thread.start()
                }
            } onCancel: {
                stop.requested.store(true, ordering: .releasing)
            }
        } onGracefulShutdown: {
            stop.requested.store(true, ordering: .releasing)
        }
        close(listener)
        unlink(path)
    }

    // MARK: The socket

    static func listen(_ path: String) throws -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { throw TestControlError("socket path \(path) is longer than \(capacity - 1) bytes") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestControlError("socket(): \(String(cString: strerror(errno)))") }
        unlink(path)  // a stale socket of an earlier run
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, 4) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw TestControlError("cannot listen on \(path): \(message)")
        }
        return fd
    }

    /// Accepts one client after another until `stop`; every wait is a
    /// `poll` of at most 100 ms, so a stop takes effect within that.
    private func serve(_ listener: Int32, stop: ServerStop) {
        while !stop.requested.load(ordering: .acquiring) {
            guard Self.waitReadable(listener) else { continue }
            let client = accept(listener, nil, nil)  // (the agent starts no child processes to leak it to)
            guard client >= 0 else { continue }
            converse(client, stop: stop)
            close(client)
        }
    }

    /// Reads lines (at most 256 bytes each) and answers each.
    private func converse(_ client: Int32, stop: ServerStop) {
        var line: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while !stop.requested.load(ordering: .acquiring) {
            guard Self.waitReadable(client) else { continue }
            let n = buffer.withUnsafeMutableBytes { Glibc.read(client, $0.baseAddress, $0.count) }
            if n <= 0 { return }  // closed, or an error
            for byte in buffer[0..<n] {
                if byte == UInt8(ascii: "\n") {
                    let reply = handle(String(decoding: line, as: UTF8.self), stop: stop) + "\n"
                    line.removeAll(keepingCapacity: true)
                    guard Self.write(client, reply) else { return }
                } else if line.count >= 256 {
                    _ = Self.write(client, "error bad_request the line is longer than 256 bytes\n")
                    return
                } else {
                    line.append(byte)
                }
            }
        }
    }

    /// The reply to one request line.
    func handle(_ request: String, stop: ServerStop) -> String {
        let words = request.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        switch (words.first ?? "", words.count) {
        case ("press", 1):
            return "ok \(control.press())"
        case ("unpress", 1):
            // Answered once a whole tick has read the released button (the
            // read after it has begun), so a command sent next sees it
            // released; within 2 s or an error.
            let before = control.reads
            control.unpress()
            let deadline = SimulatorTestControl.now() + 2_000_000_000
            while control.reads < before + 2, SimulatorTestControl.now() < deadline, !stop.requested.load(ordering: .acquiring) {
                usleep(200)
            }
            return control.reads >= before + 2 ? "ok" : "error timeout the engine did not read the sensors within 2 s"
        case ("release", 1), ("release", 2):
            guard let timeout = words.count == 2 ? Int(words[1]) : 0, (0...10_000).contains(timeout) else {
                return "error bad_request release takes a timeout of 0 to 10000 ms"
            }
            let deadline = SimulatorTestControl.now() + Int64(timeout) * 1_000_000
            var timing = control.lastPress
            while timing.released == 0, SimulatorTestControl.now() < deadline, !stop.requested.load(ordering: .acquiring) {
                usleep(200)
                timing = control.lastPress
            }
            return "ok \(timing.pressed) \(timing.seen) \(timing.released)"
        case ("last-release", 1):
            let record = control.releaseRecord
            return "ok \(record.last) \(record.count)"
        case ("ticks", 1):
            let h = control.tickIntervals()
            let us = { (ns: Int64) in String(format: "%.0f", Double(ns) / 1000) }
            return "ok count=\(h.count) p50_us=\(us(h.quantile(0.5))) p99_us=\(us(h.quantile(0.99))) p999_us=\(us(h.quantile(0.999))) max_us=\(us(h.maximum)) beyond_100ms=\(h.beyond)"
        case ("reset-ticks", 1):
            control.resetTickIntervals()
            return "ok"
        case ("start", 2):
            do {
                let id = try panel.start(words[1])
                return "ok \(id.rawValue)"
            } catch {
                return "error \(error.code.rawValue) \(error.message)"
            }
        case ("session", 1):
            return "ok \(panel.inSession() ? "running" : "idle")"
        case ("pressure", 1):
            let pressures = control.simulator.snapshot().pressuresMMHg
            let highest = Zone.allCases.map { pressures[$0] }.max() ?? 0
            return "ok \(String(format: "%.2f", highest))"
        case ("now", 1):
            return "ok \(SimulatorTestControl.now())"
        case ("fault", 3) where words[1] == "actuator":
            guard let zone = Zone(rawValue: words[2]) else { return "error bad_request unknown zone \(words[2])" }
            control.simulator.inject(.actuatorFailure(zone))
            return "ok"
        case ("clear-faults", 1):
            control.simulator.clearAllFaults()
            return "ok"
        default:
            return "error bad_request expected press, unpress, release [TIMEOUT_MS], last-release, ticks, reset-ticks, start PROGRAM, session, pressure, now, fault actuator ZONE or clear-faults"
        }
    }

    /// Waits up to 100 ms for `fd` to be readable.
    private static func waitReadable(_ fd: Int32) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, 100) > 0
    }

    private static func write(_ fd: Int32, _ text: String) -> Bool {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }
}

/// Set once by the task that stops the server; read by its thread.
final class ServerStop: Sendable {
    let requested = Atomic<Bool>(false)
}

public struct TestControlError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

extension TestControlServer.Panel {
    /// The agent's own panel: `start` is `startLocally(program:)`, a start by
    /// the person at the device (allowed when remote starts are locked out).
    public init(agent: AgentService) {
        self.init(start: { program throws(EngineError) in try agent.startLocally(program: program) },
                  inSession: { agent.isInSession })
    }
}
