import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs an executable as a child process for an end-to-end test: the
/// built `massage-agent` or `fleet-console` (see ``BuildProducts``), or a
/// tool such as `mosquitto_sub`.
///
/// - Standard output and standard error go to files (``standardOutputFile``,
///   ``standardErrorFile``), readable while the process runs — no pipe to
///   drain, no deadlock. By default the child's stdout is line buffered
///   (through coreutils' `stdbuf -oL`) so that ``waitForOutput(_:in:timeout:)``
///   sees each line when it is printed, not when a 4 KiB buffer fills.
/// - Signals: ``send(_:)``, ``terminate()`` (SIGTERM), ``kill()`` (SIGKILL),
///   and ``stop(gracePeriod:)`` (SIGTERM, then SIGKILL after a deadline).
///   The child starts with an empty signal mask and default dispositions
///   (see `ChildLaunch`: a bare Foundation `Process` started from async
///   code would have SIGTERM blocked).
/// - Every wait has a deadline and throws ``TimeoutError`` with the tail of
///   the output.
/// - A child started by ``start(_:arguments:environment:inheritEnvironment:currentDirectory:outputDirectory:standardInput:lineBufferedOutput:)``
///   never outlives the test process: `deinit` SIGKILLs it, and an orphan
///   guard (a watchdog `sh` per child) kills it even when the test process
///   crashes. A test still stops what it starts, to see how it exits.
/// - With `standardInput: true`, writing to a child that has exited must
///   not kill the test process, so the first such runner sets `SIGPIPE` to
///   be ignored in the test process (writes then throw instead; children
///   still start with the default SIGPIPE).
public final class ProcessRunner: Sendable {
    /// Which output file to look at.
    public enum Stream: Sendable {
        case standardOutput
        case standardError
    }

    /// A short-lived tool's outcome, from ``run(_:arguments:environment:standardInput:timeout:)``.
    public struct Completed: Sendable, CustomStringConvertible {
        public let status: ExitStatus
        public let standardOutput: String
        public let standardError: String

        /// Exited with status 0.
        public var succeeded: Bool { status.succeeded }

        public var description: String {
            "\(status); stdout: \(FileText.tail(standardOutput, lines: 10)); stderr: \(FileText.tail(standardError, lines: 10))"
        }
    }

    /// The executable (not the `env`/`stdbuf` trampolines that exec it).
    public let executable: URL
    public let arguments: [String]
    public let processIdentifier: Int32
    public let standardOutputFile: URL
    public let standardErrorFile: URL

    private let process: Process
    private let orphanGuard: OrphanGuard?
    private let standardInputHandle: Mutex<FileHandle?>
    /// Owned output directory, when the caller gave none; removed with the runner.
    private let ownedDirectory: TemporaryDirectory?

    private init(
        executable: URL, arguments: [String], process: Process, orphanGuard: OrphanGuard?,
        standardInput: FileHandle?, standardOutputFile: URL, standardErrorFile: URL,
        ownedDirectory: TemporaryDirectory?
    ) {
        self.executable = executable
        self.arguments = arguments
        self.process = process
        self.processIdentifier = process.processIdentifier
        self.orphanGuard = orphanGuard
        self.standardInputHandle = Mutex(standardInput)
        self.standardOutputFile = standardOutputFile
        self.standardErrorFile = standardErrorFile
        self.ownedDirectory = ownedDirectory
    }

    deinit {
        if process.isRunning {
            sendSignal(SIGKILL, to: processIdentifier)
        }
        closeStandardInput()
        orphanGuard?.release()
    }

    // MARK: Starting

    /// Starts `executable` and returns at once (it runs concurrently).
    ///
    /// - Parameters:
    ///   - environment: added to (or, with `inheritEnvironment: false`,
    ///     instead of) this process's environment.
    ///   - outputDirectory: where `<name>.stdout.log` / `<name>.stderr.log`
    ///     go; by default a fresh temporary directory removed with the runner.
    ///   - standardInput: give the child a pipe to ``write(_:)`` to;
    ///     otherwise its standard input is /dev/null.
    ///   - lineBufferedOutput: run it under `stdbuf -oL` (when coreutils'
    ///     `stdbuf` exists) so each printed line reaches the file at once.
    public static func start(
        _ executable: URL,
        arguments: [String] = [],
        environment: [String: String] = [:],
        inheritEnvironment: Bool = true,
        currentDirectory: URL? = nil,
        outputDirectory: URL? = nil,
        standardInput: Bool = false,
        lineBufferedOutput: Bool = true
    ) throws -> ProcessRunner {
        try launch(
            executable, arguments: arguments, environment: environment,
            inheritEnvironment: inheritEnvironment, currentDirectory: currentDirectory,
            outputDirectory: outputDirectory, standardInput: standardInput,
            lineBufferedOutput: lineBufferedOutput, guardAgainstOrphans: true)
    }

    /// Starts the system tool `name` (found by ``ExecutableLocator``),
    /// e.g. `try ProcessRunner.start(tool: "mosquitto_sub", arguments: [...])`.
    public static func start(
        tool name: String,
        arguments: [String] = [],
        environment: [String: String] = [:],
        standardInput: Bool = false
    ) throws -> ProcessRunner {
        try start(
            ExecutableLocator.find(name), arguments: arguments, environment: environment,
            standardInput: standardInput)
    }

    /// Runs a short-lived program to completion: feeds it `standardInput`
    /// (if any), waits up to `timeout` for it to exit (then SIGKILLs it and
    /// throws ``TimeoutError``), and returns its status and output.
    public static func run(
        _ executable: URL,
        arguments: [String] = [],
        environment: [String: String] = [:],
        standardInput: String? = nil,
        timeout: Duration = .seconds(30)
    ) async throws -> Completed {
        let runner = try launch(
            executable, arguments: arguments, environment: environment, inheritEnvironment: true,
            currentDirectory: nil, outputDirectory: nil, standardInput: standardInput != nil,
            lineBufferedOutput: false, guardAgainstOrphans: false)
        if let standardInput {
            try? runner.write(standardInput)
            runner.closeStandardInput()
        }
        let status: ExitStatus
        do {
            status = try await runner.waitForExit(timeout: timeout)
        } catch {
            runner.kill()
            throw error
        }
        return Completed(
            status: status, standardOutput: runner.standardOutput(),
            standardError: runner.standardError())
    }

    /// Runs the system tool `name` (found by ``ExecutableLocator``) to
    /// completion, e.g. `try await ProcessRunner.run(tool: "mosquitto_pub", arguments: [...])`.
    public static func run(
        tool name: String,
        arguments: [String] = [],
        environment: [String: String] = [:],
        standardInput: String? = nil,
        timeout: Duration = .seconds(30)
    ) async throws -> Completed {
        try await run(
            ExecutableLocator.find(name), arguments: arguments, environment: environment,
            standardInput: standardInput, timeout: timeout)
    }

    private static let ignoreSIGPIPE: Void = {
        _ = signal(SIGPIPE, SIG_IGN)
    }()

    private static func launch(
        _ executable: URL,
        arguments: [String],
        environment: [String: String],
        inheritEnvironment: Bool,
        currentDirectory: URL?,
        outputDirectory: URL?,
        standardInput: Bool,
        lineBufferedOutput: Bool,
        guardAgainstOrphans: Bool
    ) throws -> ProcessRunner {
        let name = executable.lastPathComponent
        let ownedDirectory = outputDirectory == nil ? try TemporaryDirectory(prefix: "process-\(name)") : nil
        let directory = outputDirectory ?? ownedDirectory!.url
        let (stdoutURL, stdoutHandle) = try createOutputFile(in: directory, name: name, suffix: "stdout")
        let (stderrURL, stderrHandle) = try createOutputFile(in: directory, name: name, suffix: "stderr")
        defer {
            try? stdoutHandle.close()
            try? stderrHandle.close()
        }

        var childEnvironment = inheritEnvironment ? ProcessInfo.processInfo.environment : [:]
        childEnvironment.merge(environment) { _, new in new }
        let token = OrphanGuard.makeToken()
        if guardAgainstOrphans {
            childEnvironment[OrphanGuard.tokenVariable] = token
        }

        let process = Process()
        try ChildLaunch.configure(
            process, executable: executable, arguments: arguments, lineBufferedOutput: lineBufferedOutput)
        process.environment = childEnvironment
        if let currentDirectory {
            process.currentDirectoryURL = currentDirectory
        }
        process.standardOutput = stdoutHandle
        process.standardError = stderrHandle
        var inputPipe: Pipe?
        if standardInput {
            ProcessRunner.ignoreSIGPIPE
            let pipe = Pipe()
            process.standardInput = pipe
            inputPipe = pipe
        } else {
            process.standardInput = FileHandle.nullDevice
        }

        do {
            try process.run()
        } catch {
            throw FixtureError(
                "cannot start \(executable.path) \(arguments.joined(separator: " ")): \(error); "
                    + "check that it exists and is executable")
        }
        try? inputPipe?.fileHandleForReading.close()

        var orphanGuard: OrphanGuard?
        if guardAgainstOrphans {
            do {
                orphanGuard = try OrphanGuard(protecting: process.processIdentifier, token: token)
            } catch {
                sendSignal(SIGKILL, to: process.processIdentifier)
                throw error
            }
        }
        return ProcessRunner(
            executable: executable, arguments: arguments, process: process, orphanGuard: orphanGuard,
            standardInput: inputPipe?.fileHandleForWriting, standardOutputFile: stdoutURL,
            standardErrorFile: stderrURL, ownedDirectory: ownedDirectory)
    }

    /// Creates `<name>.<suffix>.log` (or `<name>-2.<suffix>.log`, … if taken)
    /// exclusively and returns it with a write handle.
    private static func createOutputFile(in directory: URL, name: String, suffix: String) throws -> (URL, FileHandle) {
        for attempt in 1...1000 {
            let stem = attempt == 1 ? name : "\(name)-\(attempt)"
            let url = directory.appendingPathComponent("\(stem).\(suffix).log")
            let fd = open(url.path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o644)
            if fd >= 0 {
                return (url, FileHandle(fileDescriptor: fd, closeOnDealloc: true))
            }
            if errno != EEXIST {
                throw FixtureError(
                    "cannot create output file \(url.path): \(String(cString: strerror(errno)))")
            }
        }
        throw FixtureError("cannot find a free output file name for \(name) in \(directory.path)")
    }

    // MARK: State and output

    /// Whether the child still runs (false once it exited and was reaped).
    public var isRunning: Bool { process.isRunning }

    /// How it ended, or nil while it runs.
    public var exitStatus: ExitStatus? {
        guard !process.isRunning else { return nil }
        return ExitStatus(of: process)
    }

    /// Everything it wrote to standard output so far.
    public func standardOutput() -> String {
        FileText.read(standardOutputFile)
    }

    /// Everything it wrote to standard error so far.
    public func standardError() -> String {
        FileText.read(standardErrorFile)
    }

    /// Everything it wrote to `stream` so far.
    public func output(_ stream: Stream) -> String {
        stream == .standardOutput ? standardOutput() : standardError()
    }

    private var displayName: String {
        "\(executable.lastPathComponent) (pid \(processIdentifier))"
    }

    private func outputExcerpt() -> String {
        FileText.excerpt("stdout", standardOutputFile, lines: 15) + "\n"
            + FileText.excerpt("stderr", standardErrorFile, lines: 15)
    }

    // MARK: Standard input

    /// Writes `text` (UTF-8) to the child's standard input. Requires
    /// `standardInput: true` at start.
    public func write(_ text: String) throws {
        try write(Data(text.utf8))
    }

    /// Writes `data` to the child's standard input. Requires
    /// `standardInput: true` at start.
    public func write(_ data: Data) throws {
        // FileHandle is Sendable; take it out so no write blocks under the lock.
        guard let handle = standardInputHandle.withLock({ $0 }) else {
            throw FixtureError(
                "\(displayName) has no open standard input: start it with standardInput: true, "
                    + "and write before closeStandardInput()")
        }
        do {
            try handle.write(contentsOf: data)
        } catch {
            throw FixtureError("writing to the standard input of \(displayName) failed (\(error)); did it exit?")
        }
    }

    /// Closes the child's standard input (it reads end of file). Idempotent.
    public func closeStandardInput() {
        let handle = standardInputHandle.withLock { handle in
            defer { handle = nil }
            return handle
        }
        try? handle?.close()
    }

    // MARK: Signals

    /// Sends `signal` to the child if it still runs.
    public func send(_ signal: Int32) {
        guard process.isRunning else { return }
        sendSignal(signal, to: processIdentifier)
    }

    /// Sends SIGTERM.
    public func terminate() {
        send(SIGTERM)
    }

    /// Sends SIGKILL.
    public func kill() {
        send(SIGKILL)
    }

    // MARK: Waiting

    /// Waits until the child exits and returns how; throws ``TimeoutError``
    /// (with the output tails) if it still runs after `timeout`. The child
    /// is left running on timeout: ``kill()`` it, or use
    /// ``stop(gracePeriod:)``.
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(10)) async throws -> ExitStatus {
        let process = self.process
        do {
            try await waitUntil(timeout: timeout, pollEvery: .milliseconds(5), "\(displayName) to exit") {
                !process.isRunning
            }
        } catch let error as TimeoutError {
            throw TimeoutError(condition: error.condition, timeout: timeout, detail: outputExcerpt())
        }
        closeStandardInput()
        orphanGuard?.release()
        return exitStatus!
    }

    /// SIGTERM, wait up to `gracePeriod`, then SIGKILL (and wait up to five
    /// seconds more). Returns how it ended (`.signalled(SIGKILL)` if the
    /// grace period ran out). Returns at once if it already exited.
    @discardableResult
    public func stop(gracePeriod: Duration = .seconds(5)) async throws -> ExitStatus {
        guard process.isRunning else { return try await waitForExit(timeout: .seconds(5)) }
        terminate()
        do {
            return try await waitForExit(timeout: gracePeriod)
        } catch is TimeoutError {
            kill()
            return try await waitForExit(timeout: .seconds(5))
        }
    }

    /// Waits until `stream` contains `text`. Throws ``TimeoutError`` with
    /// the output tails at the deadline, or ``FixtureError`` as soon as the
    /// child exits without having written it.
    public func waitForOutput(
        _ text: String, in stream: Stream = .standardOutput, timeout: Duration = .seconds(10)
    ) async throws {
        let process = self.process
        let condition = "\(displayName) to write \"\(text)\" to \(stream == .standardOutput ? "stdout" : "stderr")"
        do {
            try await waitUntil(timeout: timeout, pollEvery: .milliseconds(10), condition) {
                let running = process.isRunning
                if output(stream).contains(text) {
                    return true
                }
                if !running {
                    throw FixtureError(
                        "\(displayName) exited (\(exitStatus.map(\.description) ?? "?")) without writing "
                            + "\"\(text)\" to \(stream == .standardOutput ? "stdout" : "stderr")\n\(outputExcerpt())")
                }
                return false
            }
        } catch let error as TimeoutError {
            throw TimeoutError(condition: error.condition, timeout: timeout, detail: outputExcerpt())
        }
    }
}
