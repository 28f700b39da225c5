import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Makes sure a child process (a broker, an executable under test) does
/// not outlive the test process, however the test process ends — a
/// crash, a `fatalError`, `SIGKILL` — where no `deinit` runs.
///
/// How: a watchdog `/bin/sh` reads its standard input, a pipe whose only
/// write end this process holds (close-on-exec, so no other child inherits
/// it). When this process dies the kernel closes that end, `read` returns
/// at end of file, and the watchdog SIGKILLs the child — but only if
/// `/proc/<pid>/environ` still carries the child's unique guard token, so
/// a recycled pid is never hit. Closing the guard (``release()``, or
/// dropping it) wakes the watchdog the same way: it kills the child if it
/// still runs, and otherwise just exits. So "stop the child, then release"
/// is a clean shutdown, and "release" alone is a kill.
///
/// (`PR_SET_PDEATHSIG` is not used: it fires when the *thread* that
/// spawned the child exits, and Swift's cooperative pool threads come and
/// go, which would kill brokers in the middle of tests.)
final class OrphanGuard: Sendable {
    /// The environment variable holding a child's guard token.
    static let tokenVariable = "FLEET_TEST_SUPPORT_GUARD"

    /// A fresh token for one child: `FLEET_TEST_SUPPORT_GUARD=<uuid>`
    /// goes into its environment.
    static func makeToken() -> String {
        UUID().uuidString
    }

    private let writeEnd: Mutex<Int32?>

    /// Starts a watchdog for the running child `pid` whose environment
    /// holds `token` under ``tokenVariable``.
    init(protecting pid: Int32, token: String) throws {
        var fds: [Int32] = [-1, -1]
        // pipe2(O_CLOEXEC) is not visible to Swift without _GNU_SOURCE; in
        // the instant before fcntl a concurrent Foundation spawn could not
        // leak the fds anyway, as Foundation closes every other descriptor
        // in its children.
        let piped = pipe(&fds)
        if piped == 0 {
            _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        }
        guard piped == 0 else {
            throw FixtureError("pipe() for the orphan guard failed: \(String(cString: strerror(errno)))")
        }
        let readEnd = FileHandle(fileDescriptor: fds[0], closeOnDealloc: true)
        defer { try? readEnd.close() }

        let watchdog = Process()
        watchdog.executableURL = URL(fileURLWithPath: "/bin/sh")
        watchdog.arguments = [
            "-c",
            #"read -r _ignored; grep -qaF -- "$2" "/proc/$1/environ" 2>/dev/null && kill -KILL "$1"; exit 0"#,
            "fleet-orphan-guard", String(pid), "\(OrphanGuard.tokenVariable)=\(token)",
        ]
        watchdog.standardInput = readEnd
        watchdog.standardOutput = FileHandle.nullDevice
        watchdog.standardError = FileHandle.nullDevice
        do {
            try watchdog.run()
        } catch {
            close(fds[1])
            throw FixtureError("cannot start the orphan-guard watchdog (/bin/sh): \(error)")
        }
        writeEnd = Mutex(fds[1])
    }

    /// Wakes the watchdog: it kills the child if it still runs, then exits.
    /// Idempotent.
    func release() {
        let fd = writeEnd.withLock { fd in
            defer { fd = nil }
            return fd
        }
        if let fd {
            close(fd)
        }
    }

    deinit {
        release()
    }
}
