import Foundation
import Synchronization

/// A built executable run as a long-lived process that a test starts, stops
/// and starts again on the same files: what ``AgentProcess`` and
/// ``ConsoleProcess`` share. Each start is a ``ProcessRunner`` (kept, oldest
/// first, for diagnostics); stopping is SIGTERM (``terminate()``), SIGKILL
/// (``kill()``), or SIGTERM then SIGKILL after a grace period
/// (``stop(gracePeriod:)``); every run still going is SIGKILLed when the
/// harness goes away.
///
/// Readiness is the harness's own (a status `online` on the broker, a 200
/// from `GET /healthz`); ``waitUntilReady(timeout:pollEvery:_:exitedBefore:detail:isolation:_:)``
/// polls it with a deadline, fails at once when the run exits first, and
/// puts ``diagnostics(lines:)`` into either failure.
public final class ManagedProcess: Sendable {
    /// How messages name it: "massage-agent for site-a/dev-1", "fleet-console".
    public let name: String
    public let executableURL: URL
    public let arguments: [String]
    public let environment: [String: String]
    /// Where every run's stdout and stderr files go.
    public let outputDirectory: URL
    /// The first paragraph of ``diagnostics(lines:)`` (the command, the config).
    public let header: String

    private let runs = Mutex<[ProcessRunner]>([])

    public init(
        name: String, executableURL: URL, arguments: [String], environment: [String: String],
        outputDirectory: URL, header: String
    ) {
        self.name = name
        self.executableURL = executableURL
        self.arguments = arguments
        self.environment = environment
        self.outputDirectory = outputDirectory
        self.header = header
    }

    deinit {
        for run in runs.withLock({ $0 }) where run.isRunning {
            run.kill()
        }
    }

    // MARK: Starting

    /// Starts a new run (same executable, arguments, environment and
    /// output directory); returns at once. Refused while the current run
    /// is still going.
    public func launch() throws {
        if let current = currentRun, current.isRunning {
            throw FixtureError("\(name) still runs (pid \(current.processIdentifier)); stop it before starting it again")
        }
        let runner = try ProcessRunner.start(
            executableURL, arguments: arguments, environment: environment, outputDirectory: outputDirectory)
        runs.withLock { $0.append(runner) }
    }

    /// Polls `produce` every `pollEvery` until it returns a value, and
    /// returns it. Throws a ``FixtureError`` with ``diagnostics(lines:)`` as
    /// soon as the current run has exited (`"<name> exited (<status>)
    /// <exitedBefore>"`), and a ``TimeoutError`` whose detail is the
    /// diagnostics (then `detail()`, when not empty) at the deadline.
    public func waitUntilReady<Value>(
        timeout: Duration,
        pollEvery: Duration,
        _ description: String,
        exitedBefore: String,
        detail: () -> String = { "" },
        isolation: isolated (any Actor)? = #isolation,
        _ produce: () async throws -> Value?
    ) async throws -> Value {
        let runner = currentRun
        do {
            return try await waitForValue(timeout: timeout, pollEvery: pollEvery, description, isolation: isolation) {
                () async throws -> Value? in
                if let value = try await produce() { return value }
                if let runner, !runner.isRunning {
                    throw FixtureError(
                        "\(name) exited (\(runner.exitStatus.map(\.description) ?? "?")) \(exitedBefore)\n\(diagnostics())")
                }
                return nil
            }
        } catch let error as TimeoutError {
            let extra = detail()
            throw TimeoutError(
                condition: error.condition, timeout: timeout,
                detail: diagnostics() + (extra.isEmpty ? "" : "\n" + extra))
        }
    }

    // MARK: State

    /// The latest run, nil before the first launch.
    public var currentRun: ProcessRunner? { runs.withLock { $0.last } }

    /// Every run so far, oldest first.
    public var allRuns: [ProcessRunner] { runs.withLock { $0 } }

    public var isRunning: Bool { currentRun?.isRunning ?? false }

    /// How the current run ended (nil while it runs).
    public var exitStatus: ExitStatus? { currentRun?.exitStatus }

    /// For failure messages: ``header``, then each run's status and the
    /// tail of its stderr.
    public func diagnostics(lines: Int = 40) -> String {
        var parts = [header]
        for (number, run) in allRuns.enumerated() {
            let status = run.exitStatus.map(\.description) ?? "running"
            parts.append(
                "run \(number + 1) (pid \(run.processIdentifier), \(status)): "
                    + FileText.excerpt("stderr", run.standardErrorFile, lines: lines))
        }
        return parts.joined(separator: "\n")
    }

    // MARK: Stopping

    /// SIGTERM to the current run (graceful shutdown).
    public func terminate() { currentRun?.terminate() }

    /// SIGKILL to the current run (a crash: no goodbye, the broker sends the will).
    public func kill() { currentRun?.kill() }

    /// Any other signal to the current run (e.g. SIGHUP, as logrotate or
    /// `systemctl reload` sends it).
    public func send(_ signal: Int32) { currentRun?.send(signal) }

    /// Waits for the current run to exit and returns how it ended; a
    /// timeout carries ``diagnostics(lines:)``.
    @discardableResult
    public func waitForExit(timeout: Duration) async throws -> ExitStatus {
        guard let run = currentRun else { throw FixtureError("\(name) was never started") }
        do {
            return try await run.waitForExit(timeout: timeout)
        } catch let error as TimeoutError {
            throw TimeoutError(condition: error.condition, timeout: timeout, detail: diagnostics())
        }
    }

    /// SIGTERM, then SIGKILL after `gracePeriod`; returns how it ended.
    @discardableResult
    public func stop(gracePeriod: Duration) async throws -> ExitStatus {
        guard let run = currentRun else { throw FixtureError("\(name) was never started") }
        return try await run.stop(gracePeriod: gracePeriod)
    }

    /// SIGKILL to every run still going, now (synchronous, for `defer`).
    public func stopNow() {
        for run in allRuns where run.isRunning {
            run.kill()
        }
    }
}
