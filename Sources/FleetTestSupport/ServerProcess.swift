import Foundation
import Synchronization

/// A server a fixture runs as one long-lived child on a loopback port, with
/// its output appended to a log file in the fixture's temporary directory,
/// and starts again on the same port and files: what ``MosquittoBroker``
/// and ``PostgresServer`` share. The fixture keeps what differs (its
/// config, how it launches and when it is ready, how it stops and dies);
/// this type keeps the running process, the log, the start on a free port,
/// the restart on the same one, and the end for good.
///
/// Lifecycle calls are meant to be made from one task at a time (as the
/// fixtures document); the state itself is safe to read anywhere.
final class ServerProcess: Sendable {
    /// A launched server and the guard that kills it if the test process dies.
    struct Running: Sendable {
        let process: Process
        let orphanGuard: OrphanGuard
    }

    /// How one launch ended.
    enum LaunchOutcome {
        /// Running and accepting connections.
        case ready(Running)
        /// It exited because a port was taken; the log excerpt says which.
        case addressInUse(String)
    }

    /// The executable's name in messages: "mosquitto", "postgres".
    let name: String
    /// What the fixture is called in messages: "broker", "server".
    let noun: String
    /// The log's name in messages: "broker log", "postgres log".
    let logName: String
    let logFile: URL
    let temporaryDirectory: TemporaryDirectory

    private let state: Mutex<State>

    private struct State {
        var running: Running?
        var shutDown = false
    }

    init(name: String, noun: String, logName: String, logFile: URL, temporaryDirectory: TemporaryDirectory, running: Running) {
        self.name = name
        self.noun = noun
        self.logName = logName
        self.logFile = logFile
        self.temporaryDirectory = temporaryDirectory
        state = Mutex(State(running: running))
    }

    // MARK: Starting

    /// Runs `attempt` with a fresh free port until a launch does not find
    /// its port taken (another process may grab a free port between our
    /// check and the server's bind), at most `attempts` times.
    static func onFreePort<Result>(
        _ name: String,
        attempts: Int = 5,
        isolation: isolated (any Actor)? = #isolation,
        _ attempt: () async throws -> Launched<Result>
    ) async throws -> Result {
        var lastRefusal = ""
        for _ in 1...attempts {
            switch try await attempt() {
            case .ready(let result): return result
            case .addressInUse(let excerpt): lastRefusal = excerpt
            }
        }
        throw FixtureError(
            "\(name) could not bind a free loopback port in \(attempts) attempts (another process took "
                + "each port first); \(lastRefusal)")
    }

    /// One start attempt's outcome, as ``onFreePort(_:attempts:isolation:_:)`` wants it.
    enum Launched<Result> {
        case ready(Result)
        case addressInUse(String)
    }

    /// Launches the server again on the same port (`launch`, given the time
    /// left) until it does not find the port taken or `startTimeout`
    /// passes, and makes that the running process. Refused after
    /// ``shutDown(ending:)``. A previous process still recorded (only when
    /// the one-task rule was broken) goes to `discard`. The caller stops
    /// the current process first.
    func relaunch(
        startTimeout: Duration,
        ports: String,
        discard: (Running) -> Void,
        isolation: isolated (any Actor)? = #isolation,
        _ launch: (Duration) async throws -> LaunchOutcome
    ) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: startTimeout)
        while true {
            let remaining = clock.now.duration(to: deadline)
            switch try await launch(remaining > .milliseconds(500) ? remaining : .milliseconds(500)) {
            case .ready(let running):
                let previous = state.withLock { state in
                    defer { state.running = running }
                    return state.running
                }
                if let previous { discard(previous) }
                return
            case .addressInUse(let excerpt):
                if clock.now >= deadline {
                    throw FixtureError(
                        "cannot restart \(name) on 127.0.0.1:\(ports) within \(startTimeout): the port is still "
                            + "in use (did another process take it while the \(noun) was down?); \(excerpt)")
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// Throws if ``shutDown(ending:)`` ran: the directory is gone.
    func refuseRestartAfterShutDown() throws {
        if state.withLock({ $0.shutDown }) {
            throw FixtureError(
                "restart() after stopNow(): this \(noun)'s directory is gone; start a new \(noun) instead")
        }
    }

    // MARK: State

    /// Whether the server process is running.
    var isRunning: Bool {
        state.withLock { $0.running?.process.isRunning ?? false }
    }

    /// The server's process id while it runs.
    var processIdentifier: Int32? {
        state.withLock { state in
            guard let process = state.running?.process, process.isRunning else { return nil }
            return process.processIdentifier
        }
    }

    /// The whole log so far (all runs).
    func log() -> String {
        FileText.read(logFile)
    }

    /// Waits until the log contains `text`; throws ``TimeoutError`` with the log tail.
    func waitForLog(containing text: String, timeout: Duration) async throws {
        let logFile = self.logFile
        do {
            try await waitUntil(timeout: timeout, "the \(logName) to contain \"\(text)\"") {
                FileText.read(logFile).contains(text)
            }
        } catch let error as TimeoutError {
            throw TimeoutError(
                condition: error.condition, timeout: timeout, detail: FileText.excerpt(logName, logFile))
        }
    }

    // MARK: Ending

    /// Takes the running process out of the state (nil if none): the
    /// caller ends it.
    func takeRunning() -> Running? {
        state.withLock { state in
            defer { state.running = nil }
            return state.running
        }
    }

    /// Ends the server for good: the running process (if any) goes to
    /// `end`, restarts are refused from now on, and the directory is removed.
    func shutDown(ending end: (Running) -> Void) {
        if let running = takeRunning() {
            end(running)
        }
        state.withLock { $0.shutDown = true }
        temporaryDirectory.remove()
    }
}
