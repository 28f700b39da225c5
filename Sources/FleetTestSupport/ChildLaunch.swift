import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How every fixture child process is launched: through
/// `env --default-signal` (GNU coreutils ≥ 8.31), so the child starts
/// with an empty signal mask and default signal dispositions.
///
/// Why: on Linux, Foundation's `Process` spawns the child with the signal
/// mask of the calling thread (swift-corelibs-foundation issue #4772), and
/// Swift concurrency runs on Dispatch worker threads that block nearly
/// every signal. A child launched from an `async` test would ignore
/// SIGTERM, SIGHUP and SIGALRM — `stop()` would always end in SIGKILL, a
/// reload would never happen, a graceful-shutdown test could never pass.
/// `env` resets the mask and then execs the real program, so the pid is
/// the program's own.
///
/// (Foundation also puts each child in its own process group, so a
/// Ctrl-C on `swift test` does not reach it; the ``OrphanGuard`` covers
/// that.)
enum ChildLaunch {
    /// Points `process` at `executable` + `arguments`, via the signal reset
    /// and, if `lineBufferedOutput`, `stdbuf -oL`.
    static func configure(
        _ process: Process, executable: URL, arguments: [String], lineBufferedOutput: Bool = false
    ) throws {
        let env = try ExecutableLocator.find("env")
        var command = [executable.path] + arguments
        if lineBufferedOutput, let stdbuf = ExecutableLocator.findIfPresent("stdbuf") {
            command = [stdbuf.path, "-oL"] + command
        }
        guard !command[0].contains("=") else {
            throw FixtureError(
                "cannot launch \(command[0]): env(1) would read a path containing '=' as a variable; "
                    + "move the executable to a path without '='")
        }
        process.executableURL = env
        process.arguments = ["--default-signal"] + command
    }

    /// Starts a server-like child (mosquitto, postgres) with stdout and
    /// stderr appended to `logFile`, under an ``OrphanGuard`` so it dies with
    /// the test process. Returns the process, its guard and the log's size
    /// before the start (where this run's lines begin). `name` is what
    /// errors call the child.
    static func startLogged(
        _ executable: URL, arguments: [String], logFile: URL, name: String, currentDirectory: URL? = nil
    ) throws -> (process: Process, orphanGuard: OrphanGuard, logOffset: UInt64) {
        let offset = FileText.size(of: logFile)
        let fd = open(logFile.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw FixtureError("cannot open the \(name) log \(logFile.path): \(String(cString: strerror(errno)))")
        }
        let logHandle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        defer { try? logHandle.close() }

        let token = OrphanGuard.makeToken()
        var environment = ProcessInfo.processInfo.environment
        environment[OrphanGuard.tokenVariable] = token
        let process = Process()
        try configure(process, executable: executable, arguments: arguments)
        process.environment = environment
        if let currentDirectory { process.currentDirectoryURL = currentDirectory }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = logHandle
        process.standardError = logHandle
        do {
            try process.run()
        } catch {
            throw FixtureError("cannot start \(([executable.path] + arguments).joined(separator: " ")): \(error)")
        }
        do {
            return (process, try OrphanGuard(protecting: process.processIdentifier, token: token), offset)
        } catch {
            sendSignal(SIGKILL, to: process.processIdentifier)
            throw error
        }
    }
}

extension ExitStatus {
    /// How `process` ended (it must have exited).
    init(of process: Process) {
        let status = process.terminationStatus
        self = process.terminationReason == .uncaughtSignal ? .signalled(status) : .exited(status)
    }
}
