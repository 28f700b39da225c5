import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real `mosquitto` broker for one test, on free loopback port(s), with
/// its own generated config, files and log in a fresh temporary directory.
///
/// ```swift
/// let broker = try await MosquittoBroker.start(.init(users: ["device-1": "secret"], tls: true))
/// // connect clients to broker.host / broker.port (or broker.tlsPort with
/// // broker.certificates!.caCertificate) …
/// try broker.kill()           // outage (SIGKILL)
/// try await broker.restart()  // same port(s), same config
/// broker.stopNow()            // for good: kill, remove the directory
/// ```
///
/// or scoped: `try await withMosquittoBroker(options) { broker in … }`.
///
/// Lifecycle: ``start(_:)`` returns once the broker accepts connections
/// (it logged "running" and its plain port accepts a TCP connection), or
/// throws with the tail of its log. ``stop()`` (SIGTERM, then SIGKILL after
/// ``BrokerOptions/stopTimeout``) and ``kill()`` (SIGKILL) keep the
/// directory, so ``restart()`` brings the same broker back on the same
/// port(s). ``stopNow()`` stops it for good and removes the directory
/// (synchronous: `defer { broker.stopNow() }`).
///
/// Cleanup without ``stopNow()``: when the last reference goes away,
/// `deinit` SIGKILLs the broker and removes its directory. And if the test
/// process itself dies (crash, `fatalError`, SIGKILL — no `deinit`), an
/// orphan guard (a watchdog `sh` holding a pipe to this process; see
/// `OrphanGuard`) kills the broker, so no mosquitto outlives a test run.
///
/// Lifecycle calls (`stop`, `kill`, `restart`, `stopNow`) are meant to be
/// made from one task at a time; the state itself is safe to read anywhere.
public final class MosquittoBroker: Sendable {
    /// Always the IPv4 loopback address; the broker listens on nothing else.
    public let host = "127.0.0.1"
    /// The plain MQTT listener's port.
    public let port: Int
    /// The TLS listener's port, when the broker has one.
    public let tlsPort: Int?
    /// The broker's temporary directory: config, log, password/ACL files,
    /// certificates, persistence database.
    public let directory: URL
    /// The mosquitto.conf it runs.
    public let configFile: URL
    /// Where mosquitto's log (and anything it writes to stdout/stderr)
    /// goes; appended across restarts.
    public let logFile: URL
    /// The password file, when ``BrokerOptions/users`` was given.
    public let passwordFile: URL?
    /// The ACL file, when ``BrokerOptions/acl`` was given.
    public let aclFile: URL?
    /// The generated PKI, when the broker has TLS.
    public let certificates: TestCertificates?
    /// The options it was started with.
    public let options: BrokerOptions

    private let mosquitto: URL
    private let probePorts: [Int]
    private let expectsReadyLine: Bool
    /// The running process, the log, restarts (shared with PostgresServer).
    private let server: ServerProcess

    typealias Running = ServerProcess.Running

    private init(
        options: BrokerOptions, temporaryDirectory: TemporaryDirectory, mosquitto: URL, port: Int,
        tlsPort: Int?, configFile: URL, logFile: URL, passwordFile: URL?, aclFile: URL?,
        certificates: TestCertificates?, probePorts: [Int], expectsReadyLine: Bool, running: Running
    ) {
        self.options = options
        self.directory = temporaryDirectory.url
        self.mosquitto = mosquitto
        self.port = port
        self.tlsPort = tlsPort
        self.configFile = configFile
        self.logFile = logFile
        self.passwordFile = passwordFile
        self.aclFile = aclFile
        self.certificates = certificates
        self.probePorts = probePorts
        self.expectsReadyLine = expectsReadyLine
        self.server = ServerProcess(
            name: "mosquitto", noun: "broker", logName: "broker log", logFile: logFile,
            temporaryDirectory: temporaryDirectory, running: running)
    }

    deinit {
        if let running = server.takeRunning() {
            if running.process.isRunning {
                sendSignal(SIGKILL, to: running.process.processIdentifier)
            }
            running.orphanGuard.release()
        }
        server.temporaryDirectory.remove()
    }

    // MARK: Start

    /// Starts a broker configured by `options` and returns once it accepts
    /// connections. Throws ``FixtureError`` (with the log tail) if mosquitto
    /// is missing, rejects its config, or is not ready within
    /// ``BrokerOptions/startTimeout``. If another process grabs a chosen
    /// port first, it retries with new ports.
    public static func start(_ options: BrokerOptions = .init()) async throws -> MosquittoBroker {
        let mosquitto = try ExecutableLocator.find("mosquitto")
        let temporaryDirectory = try TemporaryDirectory(prefix: "mosquitto-broker")
        let directory = temporaryDirectory.url

        let template = try options.configTemplate.map { url in
            let text = try preparedTemplate(url, options)
            try validateTemplate(text, url: url, options)
            return text
        }
        let referenced = template.map(placeholders(in:)) ?? []
        let needsTLSPort = template == nil ? options.wantsTLS : referenced.contains("TLS_PORT")
        let needsCertificates = options.wantsTLS || !referenced.isDisjoint(with: certificatePlaceholders)

        var certificates: TestCertificates?
        if needsCertificates {
            let certificateDirectory = temporaryDirectory.file("certs")
            try FileManager.default.createDirectory(at: certificateDirectory, withIntermediateDirectories: false)
            certificates = try await TestCertificates.generate(
                in: certificateDirectory, clientCommonName: options.clientCommonName)
        }
        var passwordFile: URL?
        if !options.users.isEmpty {
            passwordFile = temporaryDirectory.file("passwd")
            try await writePasswordFile(options.users, to: passwordFile!)
        }
        var aclFile: URL?
        if let acl = options.acl {
            aclFile = temporaryDirectory.file("acl")
            try writeACLFile(acl, to: aclFile!)
        }
        let persistenceDirectory = temporaryDirectory.file("persistence")
        if options.persistence || referenced.contains("PERSISTENCE_DIR") {
            try FileManager.default.createDirectory(at: persistenceDirectory, withIntermediateDirectories: false)
        }
        let configFile = temporaryDirectory.file("mosquitto.conf")
        let logFile = temporaryDirectory.file("mosquitto.log")

        return try await ServerProcess.onFreePort("mosquitto") { () async throws -> ServerProcess.Launched<MosquittoBroker> in
            let port = try freeLoopbackPort()
            let tlsPort = needsTLSPort ? try freeLoopbackPort() : nil
            let context = ConfigContext(
                port: port, tlsPort: tlsPort, directory: directory,
                persistenceDirectory: persistenceDirectory, passwordFile: passwordFile, aclFile: aclFile,
                certificates: certificates)
            let config: String
            let probePorts: [Int]
            if let template {
                config = filledTemplate(template, options, context)
                probePorts =
                    (referenced.contains("PORT") ? [port] : []) + (referenced.contains("TLS_PORT") ? [tlsPort!] : [])
            } else {
                config = generatedConfig(options, context)
                // The "running" line means every listener is bound; the TCP
                // probe of the plain port double-checks without TLS noise.
                probePorts = [port]
            }
            try writePrivateFile(config, to: configFile)
            let expectsReadyLine = logsReadyLine(config, generated: template == nil)

            switch try await launch(
                mosquitto: mosquitto, configFile: configFile, logFile: logFile, probePorts: probePorts,
                expectsReadyLine: expectsReadyLine, timeout: options.startTimeout)
            {
            case .ready(let running):
                return .ready(MosquittoBroker(
                    options: options, temporaryDirectory: temporaryDirectory, mosquitto: mosquitto,
                    port: port, tlsPort: tlsPort, configFile: configFile, logFile: logFile,
                    passwordFile: passwordFile, aclFile: aclFile, certificates: certificates,
                    probePorts: probePorts, expectsReadyLine: expectsReadyLine, running: running))
            case .addressInUse(let excerpt):
                return .addressInUse(excerpt)
            }
        }
    }

    // MARK: State

    /// Whether the broker process is running.
    public var isRunning: Bool { server.isRunning }

    /// The broker process's id while it runs.
    public var processIdentifier: Int32? { server.processIdentifier }

    /// The whole broker log so far (all runs).
    public func log() -> String { server.log() }

    /// Waits until the broker log contains `text` (e.g. "Client device-1
    /// disconnected"); throws ``TimeoutError`` with the log tail.
    public func waitForLog(containing text: String, timeout: Duration = .seconds(10)) async throws {
        try await server.waitForLog(containing: text, timeout: timeout)
    }

    // MARK: Stop, kill, restart

    /// Stops the broker gracefully: SIGTERM (mosquitto saves its
    /// persistence database and says goodbye to clients), SIGKILL if it
    /// has not exited after ``BrokerOptions/stopTimeout``. Returns once the
    /// process is gone, so its ports are closed. Keeps the directory for
    /// ``restart()``. Does nothing if it is not running.
    public func stop() async throws {
        try await end(with: SIGTERM, gracePeriod: options.stopTimeout)
    }

    /// Kills the broker abruptly (SIGKILL) — an outage: connections drop
    /// without a word from the broker, nothing is saved. Returns once the
    /// process is gone (its ports are closed; it blocks the calling thread
    /// for the few milliseconds that takes, at most five seconds). Keeps
    /// the directory for ``restart()``. Does nothing if it is not running.
    public func kill() throws {
        guard let running = server.takeRunning() else { return }
        defer { running.orphanGuard.release() }
        let pid = running.process.processIdentifier
        if running.process.isRunning {
            sendSignal(SIGKILL, to: pid)
        }
        guard MosquittoBroker.blockUntilExit(running.process, timeout: .seconds(5)) else {
            throw FixtureError(
                "mosquitto (pid \(pid)) still runs 5 s after SIGKILL; "
                    + FileText.excerpt("broker log", logFile))
        }
    }

    /// Starts the broker again on the same port(s) with the same config
    /// (stopping it first if it runs). If a port is briefly unavailable,
    /// it retries until ``BrokerOptions/startTimeout``.
    public func restart() async throws {
        try server.refuseRestartAfterShutDown()
        try await stop()
        let (mosquitto, configFile, logFile, probePorts, expectsReadyLine) =
            (self.mosquitto, self.configFile, self.logFile, self.probePorts, self.expectsReadyLine)
        try await server.relaunch(
            startTimeout: options.startTimeout, ports: probePorts.map(String.init).joined(separator: ", "),
            discard: { previous in
                // A concurrent restart won the race; keep one broker.
                if previous.process.isRunning {
                    sendSignal(SIGKILL, to: previous.process.processIdentifier)
                }
                previous.orphanGuard.release()
            }
        ) { timeout in
            try await MosquittoBroker.launch(
                mosquitto: mosquitto, configFile: configFile, logFile: logFile, probePorts: probePorts,
                expectsReadyLine: expectsReadyLine, timeout: timeout)
        }
    }

    /// Stops the broker for good, now: SIGKILL, wait until it is gone (at
    /// most five seconds, blocking), remove its directory. Synchronous, so
    /// it fits `defer { broker.stopNow() }`. Idempotent; ``restart()`` is
    /// refused afterwards. (A test that forgets it is covered by `deinit`.)
    public func stopNow() {
        server.shutDown { running in
            if running.process.isRunning {
                sendSignal(SIGKILL, to: running.process.processIdentifier)
            }
            _ = MosquittoBroker.blockUntilExit(running.process, timeout: .seconds(5))
            running.orphanGuard.release()
        }
    }

    /// Makes mosquitto reload its config, password file and ACL file
    /// (SIGHUP) without dropping connections, and — when its log shows it
    /// (generated configs) — waits until it did, so the next connection is
    /// checked against the new files.
    public func reload(timeout: Duration = .seconds(5)) async throws {
        guard let pid = processIdentifier else {
            throw FixtureError("reload(): the broker is not running; restart() it first")
        }
        let marker = "Reloading config"
        let before = FileText.read(logFile).components(separatedBy: marker).count
        sendSignal(SIGHUP, to: pid)
        guard expectsReadyLine else { return }
        let logFile = self.logFile
        do {
            try await waitUntil(timeout: timeout, pollEvery: .milliseconds(5), "mosquitto to reload after SIGHUP") {
                FileText.read(logFile).components(separatedBy: marker).count > before
            }
        } catch let error as TimeoutError {
            throw TimeoutError(
                condition: error.condition, timeout: timeout, detail: FileText.excerpt("broker log", logFile))
        }
    }

    /// Makes mosquitto write its persistence database now (SIGUSR1), as its
    /// `autosave_interval` does on a broker that has run a while, and waits
    /// until its log says so. A later ``kill()`` then loses only what changed
    /// since: ``restart()`` brings back the saved retained messages and
    /// persistent sessions with their subscriptions. The broker must run with
    /// ``BrokerOptions/persistence``.
    public func savePersistence(timeout: Duration = .seconds(5)) async throws {
        guard options.persistence else {
            throw FixtureError("savePersistence(): this broker has no persistence; start it with BrokerOptions(persistence: true)")
        }
        guard let pid = processIdentifier else {
            throw FixtureError("savePersistence(): the broker is not running; restart() it first")
        }
        let marker = "Saving in-memory database"
        let before = FileText.read(logFile).components(separatedBy: marker).count
        sendSignal(SIGUSR1, to: pid)
        guard expectsReadyLine else { return }
        let logFile = self.logFile
        do {
            try await waitUntil(timeout: timeout, pollEvery: .milliseconds(5), "mosquitto to save its database after SIGUSR1") {
                FileText.read(logFile).components(separatedBy: marker).count > before
            }
        } catch let error as TimeoutError {
            throw TimeoutError(
                condition: error.condition, timeout: timeout, detail: FileText.excerpt("broker log", logFile))
        }
    }

    /// Rewrites the password file with `users` and reloads the broker
    /// (e.g. to revoke a device). The broker must have been started with
    /// ``BrokerOptions/users``.
    public func updateUsers(_ users: [String: String]) async throws {
        guard let passwordFile else {
            throw FixtureError(
                "updateUsers(): this broker has no password file; start it with BrokerOptions(users: …)")
        }
        try await MosquittoBroker.writePasswordFile(users, to: passwordFile)
        try await reload()
    }

    /// Rewrites the ACL file and reloads the broker. The broker must have
    /// been started with ``BrokerOptions/acl``.
    public func updateACL(_ acl: String) async throws {
        guard let aclFile else {
            throw FixtureError("updateACL(): this broker has no ACL file; start it with BrokerOptions(acl: …)")
        }
        try MosquittoBroker.writeACLFile(acl, to: aclFile)
        try await reload()
    }

    /// Ends the running process with `signal`, escalating to SIGKILL
    /// after `gracePeriod`, and waits until it is gone.
    private func end(with signal: Int32, gracePeriod: Duration) async throws {
        guard let running = server.takeRunning() else { return }
        let process = running.process
        let pid = process.processIdentifier
        defer { running.orphanGuard.release() }
        // Signal only a process not yet reaped: a reaped pid may be reused.
        guard process.isRunning else { return }
        sendSignal(signal, to: pid)
        do {
            try await waitUntil(timeout: gracePeriod, pollEvery: .milliseconds(5), "mosquitto (pid \(pid)) to exit") {
                !process.isRunning
            }
            return
        } catch is TimeoutError {
            sendSignal(SIGKILL, to: pid)
        }
        do {
            try await waitUntil(timeout: .seconds(5), pollEvery: .milliseconds(5), "mosquitto (pid \(pid)) to exit after SIGKILL") {
                !process.isRunning
            }
        } catch let error as TimeoutError {
            throw TimeoutError(
                condition: error.condition, timeout: error.timeout,
                detail: FileText.excerpt("broker log", logFile))
        }
    }

    /// Takes the running process out of the state (nil if none).
    static func blockUntilExit(_ process: Process, timeout: Duration) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        let pid = process.processIdentifier
        while process.isRunning && !processIsGone(pid) {
            if clock.now >= deadline { return false }
            usleep(1000)
        }
        return true
    }
}

/// Starts a broker, runs `body` with it, and stops it for good
/// (``MosquittoBroker/stopNow()``) whether `body` returns or throws.
public func withMosquittoBroker<Result>(
    _ options: BrokerOptions = .init(),
    isolation: isolated (any Actor)? = #isolation,
    _ body: (MosquittoBroker) async throws -> Result
) async throws -> Result {
    let broker = try await MosquittoBroker.start(options)
    defer { broker.stopNow() }
    return try await body(broker)
}
