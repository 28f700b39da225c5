#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Logging
import ServiceLifecycle

/// systemd's service notifications (sd_notify(3)), without libsystemd: one
/// datagram to the `AF_UNIX` socket named by `NOTIFY_SOCKET` per message.
/// `READY=1` once the console runs (the unit is `Type=notify`), then
/// `WATCHDOG=1` every half `WATCHDOG_USEC` while ingest makes progress
/// (`WatchdogSec=` in deploy/systemd/fleet-console.service): a console
/// stuck on one message stops sending it and systemd restarts it.
/// Without `NOTIFY_SOCKET` (not under systemd) there is nothing to do.
struct SystemdNotifier: Sendable {
    /// The socket's address: a path, or `@name` for the abstract namespace.
    let socketPath: String

    init?(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty, path.hasPrefix("/") || path.hasPrefix("@") else { return nil }
        socketPath = path
    }

    /// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when it is
    /// set and `WATCHDOG_PID` (if set) is this process.
    static func watchdogInterval(environment: [String: String] = ProcessInfo.processInfo.environment) -> Duration? {
        guard let raw = environment["WATCHDOG_USEC"], let usec = UInt64(raw), usec > 0 else { return nil }
        if let pid = environment["WATCHDOG_PID"], pid != String(getpid()) { return nil }
        return .microseconds(Int64(clamping: usec / 2))
    }

    /// Sends one notification (`READY=1`, `WATCHDOG=1`, `STOPPING=1`, …);
    /// false when it could not be sent (the reason is in `errno`).
    @discardableResult
    func send(_ state: String) -> Bool {
        #if canImport(Glibc) || canImport(Musl)
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
        let fd = socket(AF_UNIX, SOCK_DGRAM, 0)
        #endif
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var path = Array(socketPath.utf8)
        let abstract = path.first == UInt8(ascii: "@")
        if abstract { path[0] = 0 } // "@name": the abstract namespace, a leading NUL
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
        let offset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path) ?? 2
        // A path counts its terminating NUL; an abstract name is exactly its bytes.
        let length = socklen_t(offset + path.count + (abstract ? 0 : 1))
        let message = Array(state.utf8)
        let sent = message.withUnsafeBytes { bytes in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), $0, length) }
            }
        }
        return sent == message.count
    }
}

/// Under systemd: `READY=1` when the console starts, then `WATCHDOG=1`
/// every half watchdog period while ingest is not stalled (`Liveness`), and
/// `STOPPING=1` when a graceful shutdown begins. Outside systemd (no
/// NOTIFY_SOCKET) it is not part of the console.
final class SystemdWatchdog: Service, Sendable {
    let notifier: SystemdNotifier
    let liveness: Liveness
    let logger: Logger

    init?(liveness: Liveness, logger: Logger) {
        guard let notifier = SystemdNotifier() else { return nil }
        self.notifier = notifier
        self.liveness = liveness
        self.logger = logger
    }

    func run() async throws {
        if !notifier.send("READY=1") {
            logger.warning("could not notify systemd (NOTIFY_SOCKET)", metadata: ["socket": "\(notifier.socketPath)", "errno": "\(errno)"])
        }
        await withGracefulShutdownHandler {
            await cancelWhenGracefulShutdown { await self.feed() }
        } onGracefulShutdown: {
            self.notifier.send("STOPPING=1")
        }
    }

    private func feed() async {
        guard let interval = SystemdNotifier.watchdogInterval() else {
            try? await gracefulShutdown()
            return
        }
        var saidStalled = false
        while !Task.isCancelled {
            let report = liveness.report()
            if !report.ingestStalled {
                notifier.send("WATCHDOG=1")
                saidStalled = false
            } else if !saidStalled {
                saidStalled = true
                logger.critical("ingest has been applying one message for \(Int(report.ingestBusySeconds)) s: no longer feeding the systemd watchdog")
            }
            try? await Task.sleep(for: interval)
        }
    }
}
