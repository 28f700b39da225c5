import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The built `fleet-console serve` running as a process, as an operator runs
/// it: a generated YAML config in a fresh temporary directory (config,
/// SQLite database, stdout/stderr of every run), an API token for each role
/// plus a site-scoped viewer and operator (their SHA-256 in the config,
/// the plain tokens in ``tokens``), started through ``ProcessRunner``, ready
/// when `GET /healthz` answers 200, stopped with SIGTERM or SIGKILL, and
/// started again on the same database and address.
///
/// ```swift
/// let broker = try await MosquittoBroker.start()
/// defer { broker.stopNow() }
/// let console = try await ConsoleProcess.start(.init(), broker: broker)
/// defer { console.stopNow() }
/// let devices = try await console.api.get("/api/v1/devices", token: console.tokens.viewer)
/// #expect(devices.status == 200)
/// try await console.stop()                      // SIGTERM, graceful
/// try await console.restart()                   // same config, database and port
/// let cli = try await console.runClient(["devices", "--json"], token: console.tokens.viewer)
/// ```
///
/// The HTTP client (``ConsoleAPI``) returns the status, headers, body and
/// the body as ``WireJSON``, so tests read the API's JSON by its names, not
/// through the console's own codecs. Set `FLEET_KEEP_TEST_DIRS=1` to keep
/// the directory (config, database, logs) after the tests.
public final class ConsoleProcess: Sendable {
    /// A site in the console's config (`sites: [{id, name, timezone}]`).
    public struct Site: Sendable, Hashable {
        public var id: String
        public var name: String
        public var timezone: String

        public init(id: String, name: String? = nil, timezone: String = "UTC") {
            self.id = id
            self.name = name ?? id
            self.timezone = timezone
        }
    }

    /// An API token: its name (what the audit log shows as the actor), role,
    /// the sites it is limited to (nil: every site) and the plain secret
    /// (only its SHA-256 goes into the config).
    public struct Token: Sendable, Hashable, CustomStringConvertible {
        public var name: String
        public var role: String
        public var sites: [String]?
        public var secret: String

        public init(name: String, role: String, sites: [String]? = nil, secret: String? = nil) {
            self.name = name
            self.role = role
            self.sites = sites
            self.secret = secret ?? "test-\(name)-\(UUID().uuidString.lowercased())"
        }

        /// The hex SHA-256 of ``secret``, as the config stores it.
        public var sha256: String { ConsoleProcess.sha256Hex(secret) }

        public var description: String { "\(name) (\(role)\(sites.map { ", sites \($0.joined(separator: ","))" } ?? ""))" }
    }

    /// The generated tokens. The five named ones always exist.
    public struct Tokens: Sendable {
        /// `viewer`, every site.
        public let viewer: String
        /// `operator`, every site.
        public let `operator`: String
        /// `admin`, every site.
        public let admin: String
        /// `viewer-{scopedSite}`: a viewer limited to ``scopedSite``.
        public let siteViewer: String
        /// `operator-{scopedSite}`: an operator limited to ``scopedSite``.
        public let siteOperator: String
        /// The one site the scoped tokens may see.
        public let scopedSite: String
        /// Every token in the config (the five above first, then ``Options/extraTokens``).
        public let all: [Token]

        /// The secret of the token named `name`, nil if there is none.
        public func secret(named name: String) -> String? { all.first { $0.name == name }?.secret }

        /// The token with this secret.
        public func token(withSecret secret: String) -> Token? { all.first { $0.secret == secret } }
    }

    /// The `health:` thresholds; nil leaves a key out (the console's default).
    public struct Health: Sendable {
        /// `health.stale_factor`.
        public var staleFactor: Double?
        /// `health.config_drift_s`.
        public var configDriftSeconds: Double?
        /// `health.clear_after_s`: short by default, so alerts clear quickly in tests.
        public var clearAfterSeconds: Double?
        /// `health.pain_signal_count`.
        public var painSignalCount: Int?
        /// `health.pain_signal_window_h`.
        public var painSignalWindowHours: Double?
        /// `health.command_timeout_s`: short by default, so `timed_out` comes quickly.
        public var commandTimeoutSeconds: Double?
        /// `health.resync_interval_s`.
        public var resyncIntervalSeconds: Double?
        /// `health.outbox_drop_window_s`.
        public var outboxDropWindowSeconds: Double?

        public init(
            staleFactor: Double? = nil,
            configDriftSeconds: Double? = nil,
            clearAfterSeconds: Double? = 1,
            painSignalCount: Int? = nil,
            painSignalWindowHours: Double? = nil,
            commandTimeoutSeconds: Double? = 5,
            resyncIntervalSeconds: Double? = nil
        ) {
            self.staleFactor = staleFactor
            self.configDriftSeconds = configDriftSeconds
            self.clearAfterSeconds = clearAfterSeconds
            self.painSignalCount = painSignalCount
            self.painSignalWindowHours = painSignalWindowHours
            self.commandTimeoutSeconds = commandTimeoutSeconds
            self.resyncIntervalSeconds = resyncIntervalSeconds
        }

        var document: WireJSON {
            var health: WireJSON = [:]
            if let staleFactor { health = health.setting("stale_factor", to: .double(staleFactor)) }
            if let configDriftSeconds { health = health.setting("config_drift_s", to: .double(configDriftSeconds)) }
            if let clearAfterSeconds { health = health.setting("clear_after_s", to: .double(clearAfterSeconds)) }
            if let painSignalCount { health = health.setting("pain_signal_count", to: .int(painSignalCount)) }
            if let painSignalWindowHours { health = health.setting("pain_signal_window_h", to: .double(painSignalWindowHours)) }
            if let commandTimeoutSeconds { health = health.setting("command_timeout_s", to: .double(commandTimeoutSeconds)) }
            if let resyncIntervalSeconds { health = health.setting("resync_interval_s", to: .double(resyncIntervalSeconds)) }
            if let outboxDropWindowSeconds { health = health.setting("outbox_drop_window_s", to: .double(outboxDropWindowSeconds)) }
            return health
        }
    }

    /// What goes into the console's config file, command line and environment.
    public struct Options: Sendable {
        /// `sites`.
        public var sites: [Site]
        /// The site of the scoped tokens (by default the first of ``sites``).
        public var scopedSite: String?
        /// More tokens, after the five generated ones.
        public var extraTokens: [Token]
        /// `FLEET_CONSOLE_ADMIN_TOKEN` in the console's environment.
        public var environmentAdminToken: String?
        /// `topic_root`.
        public var topicRoot: String?
        /// `instance`.
        public var instance: String?
        /// `health`.
        public var health: Health
        /// `broker.keepalive_s`.
        public var brokerKeepAliveSeconds: Int?
        /// `log_level`.
        public var logLevel: String?
        /// Give the broker, HTTP address and database as `--broker`,
        /// `--http` and `--db` flags instead of config keys.
        public var addressesAsFlags: Bool
        /// Laid over the generated document (objects merge key by key; a
        /// `.null` removes a key), for any other key or to break the config.
        public var settings: WireJSON
        /// More arguments after `serve --config FILE`.
        public var arguments: [String]
        /// Added to the console's environment.
        public var environment: [String: String]
        /// The `database` setting. nil: a SQLite file in the console's
        /// directory, or — with `FLEET_TEST_DATABASE=postgres` in the test
        /// run's environment — a fresh database on the shared test
        /// PostgreSQL server (``PostgresServer/shared()``), so the same
        /// tests run against both stores.
        public var database: String?

        public init(
            sites: [Site] = [
                Site(id: "clinic-north", name: "Clinic North", timezone: "Europe/Berlin"),
                Site(id: "spa-south", name: "Spa South", timezone: "America/New_York"),
                Site(id: "lab", name: "Test bench", timezone: "UTC"),
            ],
            scopedSite: String? = nil,
            extraTokens: [Token] = [],
            environmentAdminToken: String? = nil,
            topicRoot: String? = nil,
            instance: String? = nil,
            health: Health = Health(),
            brokerKeepAliveSeconds: Int? = 5,
            logLevel: String? = "debug",
            addressesAsFlags: Bool = false,
            settings: WireJSON = [:],
            arguments: [String] = [],
            environment: [String: String] = [:],
            database: String? = nil
        ) {
            self.sites = sites
            self.scopedSite = scopedSite
            self.extraTokens = extraTokens
            self.environmentAdminToken = environmentAdminToken
            self.topicRoot = topicRoot
            self.instance = instance
            self.health = health
            self.brokerKeepAliveSeconds = brokerKeepAliveSeconds
            self.logLevel = logLevel
            self.addressesAsFlags = addressesAsFlags
            self.settings = settings
            self.arguments = arguments
            self.environment = environment
            self.database = database
        }
    }

    // MARK: Instance

    public let options: Options
    public let tokens: Tokens
    /// The temporary directory holding everything of this console.
    public let directory: TemporaryDirectory
    public let configFile: URL
    /// The `database` setting it runs with (a SQLite file path or a
    /// postgres:// URL): kept across ``restart(timeout:)``.
    public let database: String
    /// The config file's text.
    public let configText: String
    public let brokerHost: String
    public let brokerPort: Int
    public let httpHost = "127.0.0.1"
    public let httpPort: Int
    /// `http://127.0.0.1:{port}`.
    public let baseURL: URL
    /// The HTTP client for this console.
    public let api: ConsoleAPI

    /// The runs of `fleet-console serve`: start, stop, output, diagnostics.
    public let process: ManagedProcess
    private let executableURL: URL

    /// The built `fleet-console` (see ``BuildProducts``).
    public static func executable() throws -> URL {
        try BuildProducts.executable(named: "fleet-console")
    }

    private init(options: Options, brokerHost: String, brokerPort: Int) throws {
        self.options = options
        self.brokerHost = brokerHost
        self.brokerPort = brokerPort
        executableURL = try ConsoleProcess.executable()
        httpPort = try freeLoopbackPort()
        baseURL = URL(string: "http://127.0.0.1:\(httpPort)")!
        api = ConsoleAPI(baseURL: baseURL)
        directory = try TemporaryDirectory(prefix: "fleet-console")
        configFile = directory.file("console.yaml")
        database = options.database ?? directory.file("console.sqlite").path

        guard let firstSite = options.sites.first?.id else {
            throw FixtureError("ConsoleProcess.Options.sites is empty; the scoped tokens need a site")
        }
        let scoped = options.scopedSite ?? firstSite
        let generated = [
            Token(name: "viewer", role: "viewer"),
            Token(name: "operator", role: "operator"),
            Token(name: "admin", role: "admin"),
            Token(name: "viewer-\(scoped)", role: "viewer", sites: [scoped]),
            Token(name: "operator-\(scoped)", role: "operator", sites: [scoped]),
        ]
        tokens = Tokens(
            viewer: generated[0].secret, operator: generated[1].secret, admin: generated[2].secret,
            siteViewer: generated[3].secret, siteOperator: generated[4].secret, scopedSite: scoped,
            all: generated + options.extraTokens)

        configText = "# generated by FleetTestSupport.ConsoleProcess\n" + AgentProcess.yaml(Self.document(
            options: options, tokens: tokens.all, brokerHost: brokerHost, brokerPort: brokerPort,
            httpPort: httpPort, database: database))
        do {
            try configText.write(to: configFile, atomically: true, encoding: .utf8)
        } catch {
            throw FixtureError("cannot write the console config \(configFile.path): \(error)")
        }
        let commandLine = Self.commandLine(
            options: options, configFile: configFile, brokerHost: brokerHost, brokerPort: brokerPort,
            httpPort: httpPort, database: database)
        var environment = options.environment
        if let admin = options.environmentAdminToken { environment["FLEET_CONSOLE_ADMIN_TOKEN"] = admin }
        process = ManagedProcess(
            name: "fleet-console", executableURL: executableURL, arguments: commandLine, environment: environment,
            outputDirectory: directory.url,
            header: "fleet-console \(commandLine.joined(separator: " ")), config \(configFile.path):\n\(configText)")
    }

    static func document(
        options: Options, tokens: [Token], brokerHost: String, brokerPort: Int, httpPort: Int, database: String
    ) -> WireJSON {
        // The test brokers are plain MQTT on loopback: said explicitly, as
        // the console requires (issue 20, item 12); dropped below when
        // ``Options/settings`` sets `broker.tls`.
        var broker: WireJSON = ["allow_plaintext": true]
        if !options.addressesAsFlags {
            broker = broker.merging(["host": .string(brokerHost), "port": .int(brokerPort)])
        }
        if let keepAlive = options.brokerKeepAliveSeconds { broker = broker.setting("keepalive_s", to: .int(keepAlive)) }
        var document: WireJSON = [
            "sites": .array(options.sites.map { ["id": .string($0.id), "name": .string($0.name), "timezone": .string($0.timezone)] }),
            "tokens": .array(tokens.map { token in
                var entry: WireJSON = ["name": .string(token.name), "role": .string(token.role), "sha256": .string(token.sha256)]
                // Every site is said explicitly (`["*"]`): the console refuses
                // a viewer or operator token without sites.
                let sites = token.sites ?? (token.role == "admin" ? nil : ["*"])
                if let sites { entry = entry.setting("sites", to: .array(sites.map { .string($0) })) }
                return entry
            }),
        ]
        document = document.setting("broker", to: broker)
        if !options.addressesAsFlags {
            document = document.setting("http", to: .string("127.0.0.1:\(httpPort)"))
            document = document.setting("database", to: .string(database))
        }
        let health = options.health.document
        if health != [:] { document = document.setting("health", to: health) }
        if let topicRoot = options.topicRoot { document = document.setting("topic_root", to: .string(topicRoot)) }
        if let instance = options.instance { document = document.setting("instance", to: .string(instance)) }
        if let logLevel = options.logLevel { document = document.setting("log_level", to: .string(logLevel)) }
        let merged = document.merging(options.settings)
        // A test that sets `broker.tls` means TLS: the opt-in would contradict it.
        if merged["broker"]?["tls"] != nil { return merged.merging(["broker": ["allow_plaintext": nil]]) }
        return merged
    }

    /// The command line after the executable.
    public var commandLine: [String] { process.arguments }

    static func commandLine(
        options: Options, configFile: URL, brokerHost: String, brokerPort: Int, httpPort: Int, database: String
    ) -> [String] {
        var arguments = ["serve", "--config", configFile.path]
        if options.addressesAsFlags {
            arguments += [
                "--broker", "\(brokerHost):\(brokerPort)", "--http", "127.0.0.1:\(httpPort)", "--db", database,
            ]
        }
        return arguments + options.arguments
    }

    // MARK: Starting

    /// Writes the config and starts the console against `host:port`;
    /// returns at once (see ``waitUntilReady(timeout:)``).
    public static func launch(_ options: Options = .init(), brokerHost: String, brokerPort: Int) throws -> ConsoleProcess {
        let console = try ConsoleProcess(options: options, brokerHost: brokerHost, brokerPort: brokerPort)
        try console.relaunch()
        return console
    }

    /// Starts the console against `broker` and waits until `GET /healthz`
    /// answers 200 (throws with its stderr if it exits or is not ready in time).
    public static func start(
        _ options: Options = .init(), broker: MosquittoBroker, timeout: Duration = .seconds(60)
    ) async throws -> ConsoleProcess {
        var options = options
        if options.database == nil, TestDatabase.current == .postgres {
            options.database = try await PostgresServer.shared().createDatabase()
        }
        let console = try launch(options, brokerHost: broker.host, brokerPort: broker.port)
        do {
            try await console.waitUntilReady(timeout: timeout)
        } catch {
            console.stopNow()
            throw error
        }
        return console
    }

    /// Starts the console again (same config, database and address);
    /// returns at once. Refused while it runs.
    public func relaunch() throws {
        try process.launch()
    }

    /// Starts the console again on the same database and address and waits
    /// until it is ready.
    public func restart(timeout: Duration = .seconds(60)) async throws {
        try relaunch()
        try await waitUntilReady(timeout: timeout)
    }

    /// Waits until `GET /healthz` answers 200. Fails at once, with the
    /// console's stderr, if the process exits first.
    public func waitUntilReady(timeout: Duration = .seconds(60)) async throws {
        let api = self.api
        try await process.waitUntilReady(
            timeout: timeout, pollEvery: .milliseconds(50), "fleet-console to answer GET /healthz with 200",
            exitedBefore: "before it was ready"
        ) { () async -> Void? in
            let response = try? await api.request("GET", "/healthz", timeout: .seconds(2))
            return response?.status == 200 ? () : nil
        }
    }

    // MARK: State

    /// The process of the latest start.
    public var currentRun: ProcessRunner? { process.currentRun }

    /// Every start so far, in order.
    public var allRuns: [ProcessRunner] { process.allRuns }

    public var isRunning: Bool { process.isRunning }

    /// For failure messages: the config, then each run's status and the
    /// tail of its stderr.
    public func diagnostics(lines: Int = 40) -> String { process.diagnostics(lines: lines) }

    // MARK: Stopping

    /// SIGTERM to the current run (graceful shutdown).
    public func terminate() { process.terminate() }

    /// SIGKILL to the current run (a crash: the broker publishes its will).
    public func kill() { process.kill() }

    /// Waits for the current run to exit and returns how it ended.
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(15)) async throws -> ExitStatus {
        try await process.waitForExit(timeout: timeout)
    }

    /// SIGTERM, then SIGKILL after `gracePeriod`; returns how it ended.
    @discardableResult
    public func stop(gracePeriod: Duration = .seconds(15)) async throws -> ExitStatus {
        try await process.stop(gracePeriod: gracePeriod)
    }

    /// SIGKILL to every run still going, now (synchronous, for `defer`).
    public func stopNow() { process.stopNow() }

    // MARK: The CLI client

    /// Runs the same executable as a client, `fleet-console <arguments>
    /// --api <baseURL>`, with `token` in `FLEET_CONSOLE_TOKEN` (empty when
    /// nil), to completion.
    public func runClient(
        _ arguments: [String], token: String?, timeout: Duration = .seconds(60)
    ) async throws -> ProcessRunner.Completed {
        try await ProcessRunner.run(
            executableURL, arguments: arguments + ["--api", baseURL.absoluteString],
            environment: ["FLEET_CONSOLE_TOKEN": token ?? ""], timeout: timeout)
    }

    // MARK: One-shot runs

    /// Runs `fleet-console serve` to completion with `config` (when given)
    /// written to a temporary `console.yaml` and passed as `--config FILE`,
    /// followed by `arguments`; for start-up failures (bad config, flags).
    public static func runToCompletion(
        config: String?, arguments: [String] = [], environment: [String: String] = [:],
        timeout: Duration = .seconds(30)
    ) async throws -> ProcessRunner.Completed {
        let directory = try TemporaryDirectory(prefix: "fleet-console-run")
        var commandLine = ["serve"]
        if let config {
            let file = directory.file("console.yaml")
            try config.write(to: file, atomically: true, encoding: .utf8)
            commandLine += ["--config", file.path]
        }
        let completed = try await ProcessRunner.run(
            try executable(), arguments: commandLine + arguments, environment: environment, timeout: timeout)
        directory.remove()
        return completed
    }

    // MARK: SHA-256

    /// The lowercase hex SHA-256 of `text`'s UTF-8 bytes (FIPS 180-4), as
    /// the console's `tokens[].sha256` wants it.
    public static func sha256Hex(_ text: String) -> String {
        SHA256Digest.hash(Array(text.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}

// MARK: - HTTP

/// One HTTP response from the console.
public struct ConsoleResponse: Sendable, CustomStringConvertible {
    public let method: String
    public let path: String
    public let status: Int
    /// Header names lowercased.
    public let headers: [String: String]
    public let body: [UInt8]
    /// The body as JSON (nil when empty or not JSON).
    public let json: WireJSON?

    /// The body as text (invalid UTF-8 repaired).
    public var text: String { String(decoding: body, as: UTF8.self) }

    public subscript(key: String) -> WireJSON? { json?[key] }

    /// `error.code` of an error body.
    public var errorCode: String? { json?["error"]?["code"]?.string }
    /// `error.message` of an error body.
    public var errorMessage: String? { json?["error"]?["message"]?.string }

    /// Whether the body is `{"error": {"code": "…", "message": "…"}}` with
    /// a non-empty code and message.
    public var hasErrorShape: Bool {
        guard let error = json?["error"], let code = error["code"]?.string, let message = error["message"]?.string else {
            return false
        }
        return !code.isEmpty && !message.isEmpty
    }

    /// Decodes the body with `decoder`.
    public func decode<T: Decodable>(_ type: T.Type, using decoder: JSONDecoder = JSONDecoder()) throws -> T {
        do {
            return try decoder.decode(type, from: Data(body))
        } catch {
            throw FixtureError("\(method) \(path): cannot decode \(type) from the body (\(error)): \(self)")
        }
    }

    public var description: String {
        let shown = text.count > 1500 ? String(text.prefix(1500)) + "…" : text
        return "\(method) \(path) → \(status): \(shown)"
    }
}

/// A small HTTP client for the console's API (URLSession; FoundationNetworking
/// on Linux). Every request has a deadline; a response of any status is
/// returned, only transport failures throw.
public struct ConsoleAPI: Sendable {
    public let baseURL: URL

    public init(baseURL: URL) {
        self.baseURL = baseURL
    }

    /// An ephemeral session: no cookies, no cache, no credential store.
    private static let session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.urlCache = nil
        configuration.httpCookieStorage = nil
        configuration.urlCredentialStorage = nil
        configuration.httpShouldSetCookies = false
        configuration.timeoutIntervalForRequest = 30
        return URLSession(configuration: configuration)
    }()

    /// Sends `method path` (path with its query, e.g. `/api/v1/devices?site=a`)
    /// with `Authorization: Bearer <token>` when `token` is given, `body`
    /// (sent as `application/json` unless `headers` say otherwise) and any
    /// other `headers` (an `Authorization` there wins over `token`).
    public func request(
        _ method: String,
        _ path: String,
        token: String? = nil,
        body: [UInt8]? = nil,
        headers: [String: String] = [:],
        timeout: Duration = .seconds(15)
    ) async throws -> ConsoleResponse {
        guard let url = URL(string: baseURL.absoluteString + path) else {
            throw FixtureError("not a usable request path: \(path)")
        }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.timeoutInterval = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        request.cachePolicy = .reloadIgnoringLocalCacheData
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.httpBody = Data(body)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }

        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await ConsoleAPI.session.data(for: request)
        } catch {
            throw FixtureError("\(method) \(url.absoluteString) failed: \(error)")
        }
        guard let http = response as? HTTPURLResponse else {
            throw FixtureError("\(method) \(url.absoluteString): not an HTTP response: \(response)")
        }
        var names: [String: String] = [:]
        for (key, value) in http.allHeaderFields {
            if let key = key as? String, let value = value as? String { names[key.lowercased()] = value }
        }
        let bytes = [UInt8](data)
        return ConsoleResponse(
            method: method, path: path, status: http.statusCode, headers: names, body: bytes,
            json: bytes.isEmpty ? nil : try? WireJSON.parse(bytes))
    }

    /// `GET path`.
    public func get(_ path: String, token: String?) async throws -> ConsoleResponse {
        try await request("GET", path, token: token)
    }

    /// `POST path` with a JSON body (none when nil).
    public func post(_ path: String, json: WireJSON? = nil, token: String?) async throws -> ConsoleResponse {
        try await request("POST", path, token: token, body: json?.bytes)
    }
}

// MARK: - SHA-256 (FIPS 180-4)

/// SHA-256 without a crypto dependency: the test support target needs it
/// only to write tokens' digests into a console config.
enum SHA256Digest {
    private static let k: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ]

    static func hash(_ message: [UInt8]) -> [UInt8] {
        var h: [UInt32] = [
            0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19,
        ]
        var data = message
        let bitLength = UInt64(message.count) &* 8
        data.append(0x80)
        while data.count % 64 != 56 { data.append(0) }
        for shift in stride(from: 56, through: 0, by: -8) { data.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift))) }

        var w = [UInt32](repeating: 0, count: 64)
        for chunk in stride(from: 0, to: data.count, by: 64) {
            for i in 0..<16 {
                let j = chunk + i * 4
                w[i] = UInt32(data[j]) << 24 | UInt32(data[j + 1]) << 16 | UInt32(data[j + 2]) << 8 | UInt32(data[j + 3])
            }
            for i in 16..<64 {
                let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7]
            for i in 0..<64 {
                let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                let ch = (e & f) ^ (~e & g)
                let t1 = hh &+ s1 &+ ch &+ k[i] &+ w[i]
                let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                let maj = (a & b) ^ (a & c) ^ (b & c)
                let t2 = s0 &+ maj
                hh = g
                g = f
                f = e
                e = d &+ t1
                d = c
                c = b
                b = a
                a = t1 &+ t2
            }
            h[0] = h[0] &+ a
            h[1] = h[1] &+ b
            h[2] = h[2] &+ c
            h[3] = h[3] &+ d
            h[4] = h[4] &+ e
            h[5] = h[5] &+ f
            h[6] = h[6] &+ g
            h[7] = h[7] &+ hh
        }
        return h.flatMap { word in (0..<4).map { UInt8(truncatingIfNeeded: word >> UInt32(24 - $0 * 8)) } }
    }

    private static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
}
