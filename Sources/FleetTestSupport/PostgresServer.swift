import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real PostgreSQL server for tests, on a free loopback port, with its
/// own cluster (initdb), socket directory and log in a fresh temporary
/// directory.
///
/// ```swift
/// let server = try await PostgresServer.start()
/// defer { server.stopNow() }
/// // fleet-console --db server.url  (postgres://fleet@127.0.0.1:PORT/fleet_test?sslmode=disable)
/// let other = try await server.createDatabase("events_replay")  // a URL
/// try await server.psql("select count(*) from device", database: "events_replay")
/// ```
///
/// or, for a suite that wants one database per test without an initdb per
/// test: `let url = try await PostgresServer.shared().createDatabase()`.
///
/// The cluster is made for tests: trust authentication on loopback (no
/// password in the URL), `fsync`, `synchronous_commit` and
/// `full_page_writes` off, dynamic shared memory in files under the data
/// directory (nothing left in /dev/shm), listening on 127.0.0.1 only.
///
/// Root: postgres refuses to run as root, and tests run as root in CI and
/// here. When the effective uid is 0, `initdb` and `postgres` run as the
/// `postgres` system user (created by Debian's `postgresql` package)
/// through `setpriv`, which execs them in place (the pid is the server's
/// own, signals reach it directly), and the temporary directory is given
/// to that user. Otherwise they run as the current user.
///
/// Lifecycle: ``start(user:database:settings:startTimeout:stopTimeout:)``
/// returns once the server logged "ready to accept connections", its port
/// accepts a TCP connection and the database exists, or throws
/// ``FixtureError`` with the tail of the server log. ``stop()`` (fast
/// shutdown) and ``kill()`` (SIGKILL of every server process) keep the
/// directory, so ``restart()`` brings the same cluster back on the same
/// port. ``stopNow()`` shuts it down for good (immediate shutdown) and
/// removes the directory.
///
/// Cleanup without ``stopNow()``: `deinit` does the same. If the test
/// process itself dies, an orphan guard (see `OrphanGuard`) SIGKILLs the
/// postmaster, and its backends exit when they see it gone.
///
/// Lifecycle calls (`stop`, `kill`, `restart`, `stopNow`) are meant to be
/// made from one task at a time; the state itself is safe to read anywhere.
public final class PostgresServer: Sendable {
    /// Always the IPv4 loopback address; the server listens on nothing else
    /// (plus its Unix socket in ``socketDirectory``).
    public let host = "127.0.0.1"
    /// The TCP port.
    public let port: Int
    /// The superuser the cluster was created with; every URL connects as it.
    public let user: String
    /// The database created at start; ``url`` points at it.
    public let database: String
    /// Server settings passed as `-c name=value` (the test defaults merged
    /// with the caller's).
    public let settings: [String: String]
    /// The server's temporary directory (data, socket, log).
    public let directory: URL
    /// The cluster (`postgres -D`).
    public let dataDirectory: URL
    /// Where the Unix socket lives (`postgres -k`).
    public let socketDirectory: URL
    /// Where the server's log (its stderr) goes; appended across restarts.
    public let logFile: URL
    /// The directory holding `initdb`, `postgres` and `psql`.
    public let binDirectory: URL
    /// The `psql` of that installation.
    public let psqlExecutable: URL
    /// How long ``restart()`` may take.
    public let startTimeout: Duration
    /// How long ``stop()`` waits for a fast shutdown before it kills.
    public let stopTimeout: Duration

    /// `postgres://USER@127.0.0.1:PORT/DATABASE?sslmode=disable`, for ``database``.
    public var url: String { url(database: database) }

    /// The URL of database `name` on this server. The test server speaks
    /// plain text on loopback, said explicitly (`sslmode=disable`): the
    /// console refuses a URL that would not verify TLS otherwise (issue 20, item 12).
    public func url(database name: String) -> String {
        "postgres://\(user)@\(host):\(port)/\(name)?sslmode=disable"
    }

    private let postgres: URL
    private let account: Account?
    /// The running postmaster, the log, restarts (shared with MosquittoBroker).
    private let server: ServerProcess
    private let databaseCounter = Mutex(0)

    /// A launched postmaster and the guard that kills it if we die.
    typealias Running = ServerProcess.Running

    /// The system account initdb and postgres run as when we are root.
    struct Account: Sendable {
        let name: String
        let uid: uid_t
        let gid: gid_t
    }

    /// What every test server runs with; ``start(user:database:settings:startTimeout:stopTimeout:)``'s
    /// `settings` override them one by one.
    public static let defaultSettings: [String: String] = [
        "listen_addresses": "127.0.0.1",
        // Speed over durability: a test cluster is thrown away. With these,
        // kill() can lose the last few hundred milliseconds of commits (see
        // there); pass "synchronous_commit": "on" where a test needs them.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        // Dynamic shared memory as files under the data directory instead
        // of /dev/shm segments, which a killed server would leave behind.
        "dynamic_shared_memory_type": "mmap",
    ]

    private init(
        temporaryDirectory: TemporaryDirectory, binDirectory: URL, postgres: URL, psql: URL,
        account: Account?, port: Int, user: String, database: String, settings: [String: String],
        dataDirectory: URL, socketDirectory: URL, logFile: URL, startTimeout: Duration,
        stopTimeout: Duration, running: Running
    ) {
        self.directory = temporaryDirectory.url
        self.binDirectory = binDirectory
        self.postgres = postgres
        self.psqlExecutable = psql
        self.account = account
        self.port = port
        self.user = user
        self.database = database
        self.settings = settings
        self.dataDirectory = dataDirectory
        self.socketDirectory = socketDirectory
        self.logFile = logFile
        self.startTimeout = startTimeout
        self.stopTimeout = stopTimeout
        self.server = ServerProcess(
            name: "postgres", noun: "server", logName: "postgres log", logFile: logFile,
            temporaryDirectory: temporaryDirectory, running: running)
    }

    deinit {
        if let running = server.takeRunning() {
            PostgresServer.shutDownImmediately(running, dataDirectory: dataDirectory)
        }
        server.temporaryDirectory.remove()
    }

    // MARK: Start

    /// Creates a cluster (initdb, superuser `user`, trust authentication),
    /// starts a server on a free loopback port, and creates `database`.
    /// Returns once it accepts connections.
    ///
    /// - Parameters:
    ///   - user: the superuser's name, used in every URL.
    ///   - database: created at start (nothing is created for "postgres").
    ///   - settings: `-c name=value` server settings over ``defaultSettings``.
    ///   - startTimeout: for the server to be ready (and for ``restart()``);
    ///     initdb has a minute of its own.
    ///   - stopTimeout: how long ``stop()`` waits before it kills.
    ///
    /// Throws ``FixtureError`` naming what to install or fix, with the tail
    /// of initdb's output or the server log. If another process grabs the
    /// chosen port first, it retries with a new one.
    public static func start(
        user: String = "fleet",
        database: String = "fleet_test",
        settings: [String: String] = [:],
        startTimeout: Duration = .seconds(30),
        stopTimeout: Duration = .seconds(10)
    ) async throws -> PostgresServer {
        try validateName(user, "user name")
        try validateName(database, "database name")
        let binDirectory = try findBinDirectory()
        let initdb = binDirectory.appendingPathComponent("initdb")
        let postgres = binDirectory.appendingPathComponent("postgres")
        let psqlInBin = binDirectory.appendingPathComponent("psql")
        let psql = try access(psqlInBin.path, X_OK) == 0 ? psqlInBin : ExecutableLocator.find("psql")
        let account = try serverAccount()

        let temporaryDirectory = try TemporaryDirectory(prefix: "postgres-server")
        let directory = temporaryDirectory.url
        let socketDirectory = temporaryDirectory.file("socket")
        let dataDirectory = temporaryDirectory.file("data")
        let logFile = temporaryDirectory.file("postgres.log")
        try FileManager.default.createDirectory(at: socketDirectory, withIntermediateDirectories: false)
        if let account {
            for path in [directory.path, socketDirectory.path] where chown(path, account.uid, account.gid) != 0 {
                throw FixtureError(
                    "cannot give \(path) to the \(account.name) user (postgres refuses to run as root, so it "
                        + "runs as \(account.name)): \(String(cString: strerror(errno)))")
            }
        }

        try await initializeCluster(
            initdb: initdb, dataDirectory: dataDirectory, user: user, account: account, directory: directory)

        let merged = defaultSettings.merging(settings) { _, caller in caller }
        return try await ServerProcess.onFreePort("postgres") { () async throws -> ServerProcess.Launched<PostgresServer> in
            let port = try freeLoopbackPort()
            switch try await launch(
                postgres: postgres, account: account, dataDirectory: dataDirectory,
                socketDirectory: socketDirectory, port: port, settings: merged, logFile: logFile,
                directory: directory, timeout: startTimeout)
            {
            case .ready(let running):
                let server = PostgresServer(
                    temporaryDirectory: temporaryDirectory, binDirectory: binDirectory, postgres: postgres,
                    psql: psql, account: account, port: port, user: user, database: database,
                    settings: merged, dataDirectory: dataDirectory, socketDirectory: socketDirectory,
                    logFile: logFile, startTimeout: startTimeout, stopTimeout: stopTimeout, running: running)
                if database != "postgres" {
                    do {
                        try await server.createDatabaseNamed(database)
                    } catch {
                        server.stopNow()
                        throw error
                    }
                }
                return .ready(server)
            case .addressInUse(let excerpt):
                return .addressInUse(excerpt)
            }
        }
    }

    /// Runs initdb: superuser `user`, trust authentication (local and
    /// loopback), UTF-8 with the C locale, no fsync.
    private static func initializeCluster(
        initdb: URL, dataDirectory: URL, user: String, account: Account?, directory: URL
    ) async throws {
        let arguments = [
            "-D", dataDirectory.path, "--username=\(user)", "--auth=trust", "--encoding=UTF8",
            "--locale=C", "--no-sync",
        ]
        let (executable, fullArguments) = try command(initdb, arguments, as: account)
        let runner = try ProcessRunner.start(
            executable, arguments: fullArguments, currentDirectory: directory, outputDirectory: directory,
            lineBufferedOutput: false)
        let status: ExitStatus
        do {
            status = try await runner.waitForExit(timeout: .seconds(60))
        } catch {
            runner.kill()
            throw error
        }
        guard status.succeeded else {
            let hint =
                account.map {
                    " (it runs as the \($0.name) user because we are root: every directory above "
                        + "\(directory.path) must be searchable by \($0.name); set TMPDIR to e.g. /tmp)"
                } ?? ""
            throw FixtureError(
                "initdb failed (\(status))\(hint); "
                    + FileText.excerpt("initdb stderr", runner.standardErrorFile, lines: 15) + "\n"
                    + FileText.excerpt("initdb stdout", runner.standardOutputFile, lines: 5))
        }
    }

    // MARK: Shared server

    /// One server per test process, started on first use, for suites that
    /// take a fresh database per test (``createDatabase()``) instead of a
    /// server per test. Concurrent first callers wait for the same start.
    /// It runs until the test process exits (an `atexit` handler shuts it
    /// down and removes its directory; the orphan guard covers crashes).
    /// Do not stop, kill or restart it: other tests share it. A failed
    /// start is remembered, so every test reports the same error at once.
    public static func shared() async throws -> PostgresServer {
        let task = sharedServerStart.withLock { task in
            if let task { return task }
            // Unstructured on purpose: the start belongs to no one test, so
            // cancelling the test that happened to come first must not
            // cancel it for the others.
            let started = Task { () async throws -> PostgresServer in
                let server = try await PostgresServer.start()
                sharedServerForExit.withLock { $0 = server }
                atexit {
                    let server = sharedServerForExit.withLock { server in
                        defer { server = nil }
                        return server
                    }
                    server?.stopNow()
                }
                return server
            }
            task = started
            return started
        }
        return try await task.value
    }

    // MARK: Databases and SQL

    /// Creates database `name` (letters, digits, `_` and `-`, starting with
    /// a letter or `_`, at most 63 bytes) and returns its URL. Throws if it
    /// exists.
    @discardableResult
    public func createDatabase(_ name: String) async throws -> String {
        try PostgresServer.validateName(name, "database name")
        try await createDatabaseNamed(name)
        return url(database: name)
    }

    /// Creates a database with a name unique on this server (`test_1`,
    /// `test_2`, …) and returns its URL: one per test on ``shared()``.
    public func createDatabase() async throws -> String {
        let number = databaseCounter.withLock { counter in
            counter += 1
            return counter
        }
        return try await createDatabase("test_\(number)")
    }

    /// Runs `sql` with `psql` (no psqlrc, stop at the first error, unaligned
    /// tuples only: `select 1, 'a'` prints `1|a`) in `database` (default
    /// ``database``) and returns what it printed. Throws ``FixtureError``
    /// with psql's error if a statement fails.
    @discardableResult
    public func psql(_ sql: String, database name: String? = nil, timeout: Duration = .seconds(30)) async throws
        -> String
    {
        let target = url(database: name ?? database)
        let result = try await ProcessRunner.run(
            psqlExecutable,
            arguments: ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", target, "-c", sql],
            environment: ["PGCONNECT_TIMEOUT": "10"], timeout: timeout)
        guard result.succeeded else {
            throw FixtureError(
                "psql \(target) -c \"\(sql)\" failed (\(result.status)): "
                    + FileText.tail(result.standardError, lines: 10))
        }
        return result.standardOutput
    }

    /// CREATE DATABASE, retried for a while when template1 is briefly busy.
    private func createDatabaseNamed(_ name: String) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(10))
        while true {
            do {
                try await psql("CREATE DATABASE \"\(name)\"", database: "postgres")
                return
            } catch let error as FixtureError
                where error.message.contains("is being accessed by other users") && clock.now < deadline
            {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    // MARK: State

    /// Whether the postmaster is running.
    public var isRunning: Bool { server.isRunning }

    /// The postmaster's process id while it runs.
    public var processIdentifier: Int32? { server.processIdentifier }

    /// The whole server log so far (all runs).
    public func log() -> String { server.log() }

    /// Waits until the server log contains `text`; throws ``TimeoutError``
    /// with the log tail.
    public func waitForLog(containing text: String, timeout: Duration = .seconds(10)) async throws {
        try await server.waitForLog(containing: text, timeout: timeout)
    }

    // MARK: Stop, kill, restart

    /// Stops the server gracefully (SIGINT, PostgreSQL's fast shutdown:
    /// open transactions roll back, clients are disconnected, a checkpoint
    /// is written), killing it if it has not exited after ``stopTimeout``.
    /// Returns once every server process is gone, so the port is closed.
    /// Keeps the directory for ``restart()``. Does nothing if it is not
    /// running.
    public func stop() async throws {
        guard let running = server.takeRunning() else { return }
        defer { running.orphanGuard.release() }
        let process = running.process
        let pid = process.processIdentifier
        guard process.isRunning else { return }
        sendSignal(SIGINT, to: pid)
        do {
            try await waitUntil(timeout: stopTimeout, pollEvery: .milliseconds(5), "postgres (pid \(pid)) to exit") {
                PostgresServer.hasExited(process)
            }
        } catch is TimeoutError {
            try PostgresServer.crash(running, dataDirectory: dataDirectory, logFile: logFile)
        }
    }

    /// Kills the server abruptly — an outage: SIGKILL to the postmaster and
    /// every backend and auxiliary process, so connections drop without a
    /// word and nothing is checkpointed; ``restart()`` then runs crash
    /// recovery. Returns once every process is gone (it blocks the calling
    /// thread for the milliseconds that takes, at most five seconds). Keeps
    /// the directory. Does nothing if it is not running.
    ///
    /// With the default `synchronous_commit=off`, commits of the last few
    /// hundred milliseconds may not have reached the WAL and are lost, as
    /// on a real crash with that setting. A test that counts on committed
    /// rows surviving starts the server with
    /// `settings: ["synchronous_commit": "on"]` (cheap with `fsync=off`).
    public func kill() throws {
        guard let running = server.takeRunning() else { return }
        defer { running.orphanGuard.release() }
        try PostgresServer.crash(running, dataDirectory: dataDirectory, logFile: logFile)
    }

    /// Starts the server again on the same port with the same cluster and
    /// settings (stopping it first if it runs). If the port is briefly
    /// unavailable, it retries until ``startTimeout``.
    public func restart() async throws {
        try server.refuseRestartAfterShutDown()
        try await stop()
        let (postgres, account, dataDirectory, socketDirectory, port, settings, logFile, directory) =
            (self.postgres, self.account, self.dataDirectory, self.socketDirectory, self.port, self.settings,
             self.logFile, self.directory)
        try await server.relaunch(
            startTimeout: startTimeout, ports: String(port),
            discard: { previous in
                // A concurrent restart won the race; two postmasters
                // cannot share a data directory, so this cannot happen
                // unless the caller broke the one-task rule.
                PostgresServer.shutDownImmediately(previous, dataDirectory: dataDirectory)
            }
        ) { timeout in
            try await PostgresServer.launch(
                postgres: postgres, account: account, dataDirectory: dataDirectory,
                socketDirectory: socketDirectory, port: port, settings: settings, logFile: logFile,
                directory: directory, timeout: timeout)
        }
    }

    /// Shuts the server down for good, now: SIGQUIT (PostgreSQL's immediate
    /// shutdown, which also ends every backend and removes its shared
    /// memory), SIGKILL if that takes over five seconds, then removes the
    /// directory. Synchronous, so it fits `defer { server.stopNow() }`.
    /// Idempotent; ``restart()`` is refused afterwards.
    public func stopNow() {
        let dataDirectory = self.dataDirectory
        server.shutDown { running in
            PostgresServer.shutDownImmediately(running, dataDirectory: dataDirectory)
        }
    }
}

/// Starts a server, runs `body` with it, and shuts it down for good
/// (``PostgresServer/stopNow()``) whether `body` returns or throws.
public func withPostgresServer<Result>(
    user: String = "fleet",
    database: String = "fleet_test",
    settings: [String: String] = [:],
    isolation: isolated (any Actor)? = #isolation,
    _ body: (PostgresServer) async throws -> Result
) async throws -> Result {
    let server = try await PostgresServer.start(user: user, database: database, settings: settings)
    defer { server.stopNow() }
    return try await body(server)
}

/// The start of ``PostgresServer/shared()``'s server, once begun.
private let sharedServerStart = Mutex<Task<PostgresServer, any Error>?>(nil)
/// The shared server once started, for the `atexit` handler to shut down.
private let sharedServerForExit = Mutex<PostgresServer?>(nil)

// MARK: - Launching and ending processes

extension PostgresServer {
    typealias LaunchOutcome = ServerProcess.LaunchOutcome

    /// Starts the postmaster with stdout/stderr appended to `logFile`, under
    /// an orphan guard, and polls until it is ready: "database system is
    /// ready to accept connections" is in the log and the port accepts a
    /// TCP connection. Returns `.addressInUse` if it exited because the
    /// port was taken; throws with the log tail if it exited for another
    /// reason or missed `timeout`.
    static func launch(
        postgres: URL, account: Account?, dataDirectory: URL, socketDirectory: URL, port: Int,
        settings: [String: String], logFile: URL, directory: URL, timeout: Duration
    ) async throws -> LaunchOutcome {
        var arguments = ["-D", dataDirectory.path, "-p", String(port), "-k", socketDirectory.path]
        for (name, value) in settings.sorted(by: { $0.key < $1.key }) {
            arguments += ["-c", "\(name)=\(value)"]
        }
        let (executable, fullArguments) = try command(postgres, arguments, as: account)
        let commandLine = ([executable.path] + fullArguments).joined(separator: " ")
        let (process, orphanGuard, offset) = try ChildLaunch.startLogged(
            executable, arguments: fullArguments, logFile: logFile, name: "postgres", currentDirectory: directory)
        let pid = process.processIdentifier

        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            let alive = process.isRunning
            let log = FileText.read(logFile, from: offset)
            if !alive {
                orphanGuard.release()
                let excerpt = FileText.excerpt("postgres log", logFile, from: offset)
                if log.contains("Address already in use") {
                    return .addressInUse(excerpt)
                }
                let status = ExitStatus(of: process)
                throw FixtureError(
                    "postgres exited during start-up (\(status)): \(commandLine) "
                        + "(set FLEET_KEEP_TEST_DIRS=1 to keep \(directory.path)); \(excerpt)")
            }
            if log.contains("database system is ready to accept connections"), acceptsTCPConnections(port: port) {
                return .ready(Running(process: process, orphanGuard: orphanGuard))
            }
            if clock.now >= deadline {
                let running = Running(process: process, orphanGuard: orphanGuard)
                try? crash(running, dataDirectory: dataDirectory, logFile: logFile)
                orphanGuard.release()
                throw FixtureError(
                    "postgres (pid \(pid)) did not accept connections on 127.0.0.1:\(port) within \(timeout); "
                        + "killed it. " + FileText.excerpt("postgres log", logFile, from: offset))
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Immediate shutdown (SIGQUIT): the postmaster ends its children, frees
    /// its shared memory and exits, in milliseconds. Falls back to
    /// ``crash(_:dataDirectory:logFile:)`` after five seconds. Blocking;
    /// releases the orphan guard.
    static func shutDownImmediately(_ running: Running, dataDirectory: URL) {
        defer { running.orphanGuard.release() }
        let process = running.process
        guard process.isRunning else { return }
        sendSignal(SIGQUIT, to: process.processIdentifier)
        if !blockUntilExited(process, timeout: .seconds(5)) {
            try? crash(running, dataDirectory: dataDirectory, logFile: nil)
        }
    }

    /// SIGKILL to the postmaster and all its children (stopped first, so it
    /// forks no new ones meanwhile), waits until all are gone, and removes
    /// what a killed postmaster leaves behind: its System V shared memory
    /// segment and `postmaster.pid`. Blocking.
    static func crash(_ running: Running, dataDirectory: URL, logFile: URL?) throws {
        let process = running.process
        let pid = process.processIdentifier
        var children: [Int32] = []
        if process.isRunning {
            sendSignal(SIGSTOP, to: pid)
            _ = blockUntil(timeout: .seconds(1)) { hasExited(process) || processState(pid)?.state == "T" }
            if process.isRunning {
                children = childProcesses(of: pid)
                for child in children {
                    sendSignal(SIGKILL, to: child)
                }
                sendSignal(SIGKILL, to: pid)
            }
        }
        let gone = blockUntil(timeout: .seconds(5)) {
            hasExited(process) && children.allSatisfy(processIsGone)
        }
        guard gone else {
            throw FixtureError(
                "postgres (pid \(pid)) or one of its processes (\(children)) still runs 5 s after SIGKILL"
                    + (logFile.map { "; " + FileText.excerpt("postgres log", $0) } ?? ""))
        }
        removeLeftovers(of: dataDirectory)
    }

    /// After a SIGKILL: removes the postmaster's System V segment (the key
    /// and id are on line 7 of `postmaster.pid`) if nothing is attached to
    /// it, and `postmaster.pid` itself, so a recycled pid cannot look like a
    /// running server to the next start.
    private static func removeLeftovers(of dataDirectory: URL) {
        let lockFile = dataDirectory.appendingPathComponent("postmaster.pid")
        let lines = FileText.read(lockFile).split(separator: "\n", omittingEmptySubsequences: false)
        #if canImport(Glibc)
        if lines.count > 6 {
            let fields = lines[6].split(separator: " ")
            if fields.count == 2, let key = Int32(fields[0]), let id = Int32(fields[1]) {
                var segment = shmid_ds()
                if shmctl(id, IPC_STAT, &segment) == 0, segment.shm_perm.__key == key, segment.shm_nattch == 0 {
                    _ = shmctl(id, IPC_RMID, nil)
                }
            }
        }
        #endif
        try? FileManager.default.removeItem(at: lockFile)
    }

    // MARK: Process helpers

    /// Whether `process` exited: reaped, or a zombie nobody reaped yet (as
    /// in an `atexit` handler, where Foundation may no longer reap).
    static func hasExited(_ process: Process) -> Bool {
        !process.isRunning || processIsGone(process.processIdentifier)
    }

    /// Polls every millisecond until `condition` holds; false if it still
    /// does not after `timeout`.
    static func blockUntil(timeout: Duration, _ condition: () -> Bool) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while !condition() {
            if clock.now >= deadline { return false }
            usleep(1000)
        }
        return true
    }

    static func blockUntilExited(_ process: Process, timeout: Duration) -> Bool {
        blockUntil(timeout: timeout) { hasExited(process) }
    }
    /// The processes whose parent is `pid` (a postmaster's backends and
    /// auxiliary processes, which are not in its process group).
    static func childProcesses(of pid: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(Int32.init).filter { processState($0)?.parent == pid }
    }

    // MARK: Setup helpers

    /// `executable arguments`, or — when we are root — the same through
    /// `setpriv` as `account`, which execs it in place.
    static func command(_ executable: URL, _ arguments: [String], as account: Account?) throws -> (URL, [String]) {
        guard let account else { return (executable, arguments) }
        let setpriv = try ExecutableLocator.find("setpriv")
        return (
            setpriv,
            ["--reuid=\(account.uid)", "--regid=\(account.gid)", "--init-groups", "--", executable.path] + arguments
        )
    }

    /// nil when not root; the `postgres` user when root.
    static func serverAccount() throws -> Account? {
        guard geteuid() == 0 else { return nil }
        guard let account = postgresAccount else {
            throw FixtureError(
                "running as root, and there is no 'postgres' user to run PostgreSQL as (postgres refuses to run "
                    + "as root); apt-get install postgresql creates it (deploy/test.sh installs it), or run the "
                    + "tests as a non-root user")
        }
        return account
    }

    /// Looked up once (getpwnam is not reentrant; a static let's
    /// initializer runs once).
    private static let postgresAccount: Account? = {
        guard let entry = getpwnam("postgres") else { return nil }
        return Account(name: "postgres", uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid)
    }()

    /// The directory with `initdb` and `postgres`: `$FLEET_POSTGRES_BIN`,
    /// else the newest `/usr/lib/postgresql/<version>/bin` (Debian), else
    /// the directory of an `initdb` on `PATH`.
    static func findBinDirectory() throws -> URL {
        func hasServer(_ directory: String) -> Bool {
            access(directory + "/initdb", X_OK) == 0 && access(directory + "/postgres", X_OK) == 0
        }
        if let override = ProcessInfo.processInfo.environment["FLEET_POSTGRES_BIN"], !override.isEmpty {
            guard hasServer(override) else {
                throw FixtureError(
                    "FLEET_POSTGRES_BIN=\(override) holds no executable initdb and postgres; point it at "
                        + "a PostgreSQL bin directory or unset it")
            }
            return URL(fileURLWithPath: override, isDirectory: true)
        }
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
            .compactMap { name -> (name: String, version: [Int])? in
                let parts = name.split(separator: ".").map { Int($0) }
                guard !parts.isEmpty, !parts.contains(nil) else { return nil }
                return (name, parts.compactMap { $0 })
            }
            .sorted { $0.version.lexicographicallyPrecedes($1.version) }
        for candidate in versions.reversed() where hasServer("\(root)/\(candidate.name)/bin") {
            return URL(fileURLWithPath: "\(root)/\(candidate.name)/bin", isDirectory: true)
        }
        if let initdb = ExecutableLocator.findIfPresent("initdb") {
            let directory = initdb.resolvingSymlinksInPath().deletingLastPathComponent()
            if hasServer(directory.path) {
                return directory
            }
        }
        throw FixtureError(
            "PostgreSQL's server programs (initdb, postgres) were found neither in \(root)/*/bin nor on PATH; "
                + "apt-get install postgresql (deploy/test.sh installs everything the tests need), or set "
                + "FLEET_POSTGRES_BIN to the directory holding them")
    }

    /// Names go into URLs unescaped and into SQL as quoted identifiers.
    static func validateName(_ name: String, _ what: String) throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
        guard let first = name.first, first.isLetter || first == "_", name.allSatisfy(allowed.contains),
            name.utf8.count <= 63
        else {
            throw FixtureError(
                "\(what) \"\(name)\" is not usable: use ASCII letters, digits, '_' and '-', start with a letter "
                    + "or '_', at most 63 characters (e.g. \"events_replay\")")
        }
    }
}
