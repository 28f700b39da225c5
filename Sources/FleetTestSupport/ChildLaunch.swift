import Foundation

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
}
