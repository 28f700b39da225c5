import Crypto
import FleetProtocol
import FleetSettings
import Foundation
import Logging
import MassageEngine
import Yams

public struct ConsoleConfiguration: Sendable {
    public var broker = BrokerSettings()
    public var topicRoot: TopicRoot = .default
    public var httpHost = "127.0.0.1"
    public var httpPort = 8080
    /// The `database` setting: a SQLite file (the default) or PostgreSQL.
    public var database: StoreLocation
    /// This console's name on the broker (client id, reply topic).
    public var instance = "console"
    /// `--replica NAME`: one of several consoles sharing a PostgreSQL
    /// database, splitting ingestion through `$share/console/…` (the name
    /// becomes the instance). nil: the only console.
    public var replica: String?
    /// How long the coordinator lease lasts (`replica.lease_s`): a replica
    /// that dies hands its once-only work over within this time.
    public var leaseSeconds: Double = 10
    public var sites: [SiteConfiguration] = []
    public var health = HealthThresholds()
    /// `ingest.*`: what one device may send (messages and bytes per second).
    public var deviceQuota = DeviceQuota()
    /// `retention.*`: how long events, sessions and cleared alerts are kept.
    public var retention = RetentionSettings()
    public var tokens: [TokenEntry] = []
    public var logLevel: Logger.Level = .info
    public var maxRequestBodyBytes = 1 << 20
    /// `secure_cookies`: whether the session cookie is `Secure` (and `__Host-`).
    public var secureCookies: CookieSecurity = .off
    /// `dashboard.max_streams_per_session`: live-update streams (Server-Sent
    /// Events) one dashboard session may hold open at once; one more is 429
    /// `too_many_streams`.
    public var maxStreamsPerSession = 10

    public init(database: StoreLocation) {
        self.database = database
    }

    public init(databasePath: String) {
        self.init(database: .sqlite(path: databasePath))
    }

    public func site(_ id: String) -> SiteConfiguration? { sites.first { $0.id == id } }

    public func timeZone(ofSite id: String) -> TimeZone { site(id)?.timeZone ?? TimeZone(identifier: "UTC")! }
}

public struct ConsoleOverrides: Sendable {
    public var broker: String?
    public var http: String?
    public var database: String?
    public var logLevel: String?
    public var adminToken: String?
    public var replica: String?
    public init(broker: String? = nil, http: String? = nil, database: String? = nil, logLevel: String? = nil, adminToken: String? = nil, replica: String? = nil) {
        self.replica = replica
        self.broker = broker
        self.http = http
        self.database = database
        self.logLevel = logLevel
        self.adminToken = adminToken
    }
}

extension ConsoleConfiguration {
    static let knownKeys: [String: Set<String>] = [
        "": ["broker", "topic_root", "http", "database", "instance", "replica", "sites", "health", "ingest", "retention", "tokens", "tokens_file", "log_level", "max_request_body_bytes", "secure_cookies", "dashboard", "database_password_file"],
        "dashboard": ["max_streams_per_session"],
        "replica": ["name", "lease_s"],
        "broker": BrokerSettings.keys,
        "broker.tls": BrokerSettings.tlsKeys,
        "retention": ["events_days", "sessions_days", "alerts_days", "interval_s"],
        "ingest": ["device_messages_per_s", "device_bytes_per_s", "device_burst_messages", "device_burst_bytes"],
        "health": ["stale_factor", "config_drift_s", "clear_after_s", "pain_signal_count", "pain_signal_window_h", "command_timeout_s", "resync_interval_s", "max_start_ttl_s", "outbox_drop_window_s", "disk_free_min_mb"],
    ]

    /// Loads and validates the console's YAML file; `FLEET_CONSOLE_ADMIN_TOKEN`
    /// (passed as `overrides.adminToken`) adds an admin token.
    public static func load(file: URL?, overrides: ConsoleOverrides = .init()) throws(ConfigurationError) -> ConsoleConfiguration {
        let source = file?.path ?? "command line"
        var root: [String: Any] = [:]
        let base = file?.deletingLastPathComponent() ?? URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        if let file {
            let text: String
            do { text = try String(contentsOf: file, encoding: .utf8) } catch {
                throw ConfigurationError(source: source, problems: [.init(key: "", message: "cannot read the file: \(error.localizedDescription)")])
            }
            let loaded: Any?
            do { loaded = try YAMLLoader.load(yaml: text) } catch {
                throw ConfigurationError(source: source, problems: [.init(key: "", message: "not valid YAML: \(error)")])
            }
            root = try ConfigReader.mapping(loaded, source: source)
        }
        var r = ConfigReader(root: root, known: knownKeys)
        let dbText = overrides.database ?? r.string("database") ?? "fleet-console.sqlite"
        var c = ConsoleConfiguration(databasePath: URL(fileURLWithPath: "fleet-console.sqlite", relativeTo: base).path)
        do { c.database = try StoreLocation.parse(dbText, relativeTo: base) } catch {
            r.problem(overrides.database != nil ? "--db" : "database", error.message)
        }
        // The database password: PGPASSWORD, or a file only its owner can
        // read; never the URL (issue 20, item 11).
        if let path = r.string("database_password_file") {
            let url = URL(fileURLWithPath: path, relativeTo: base)
            if case .postgres(var location) = c.database {
                if let password = readSecretFile(url, key: "database_password_file", into: &r) {
                    location.password = password.trimmingCharacters(in: .newlines)
                    c.database = .postgres(location)
                }
            } else {
                r.problem("database_password_file", "only used with a postgres:// database; database is \(c.database.description)")
            }
        }
        c.broker = BrokerSettings.read(&r, base: base, override: overrides.broker)
        if let root = r.string("topic_root") {
            do { c.topicRoot = try TopicRoot(root) } catch { r.problem("topic_root", error.description) }
        }
        if let http = overrides.http ?? r.string("http") {
            let parts = http.split(separator: ":", omittingEmptySubsequences: false)
            if parts.count == 2, !parts[0].isEmpty, let port = Int(parts[1]), (0...65535).contains(port) {
                c.httpHost = String(parts[0])
                c.httpPort = port
            } else {
                r.problem(overrides.http != nil ? "--http" : "http", "expected HOST:PORT, e.g. 127.0.0.1:8080; got \"\(http)\"")
            }
        }
        if let instance = r.string("instance") {
            if Identifier.isValid(instance) { c.instance = instance } else { r.problem("instance", "\"\(instance)\" is not valid: \(Identifier.ruleInWords)") }
        }
        if let v = r.int("max_request_body_bytes", in: 1024...(64 << 20)) { c.maxRequestBodyBytes = v }
        if let v = r.value("secure_cookies") {
            switch v {
            case let b as Bool: c.secureCookies = b ? .always : .off
            case let s as String where s == "forwarded": c.secureCookies = .forwardedProto
            default: r.problem("secure_cookies", "expected true (TLS in front of every request), false, or \"forwarded\" (trust X-Forwarded-Proto from the proxy); got \(v)")
            }
        }
        if let v = r.int("dashboard.max_streams_per_session", in: 1...100) { c.maxStreamsPerSession = v }
        // Replicas
        if let v = r.double("replica.lease_s", in: 2...300) { c.leaseSeconds = v }
        if let name = overrides.replica ?? r.string("replica.name") {
            let key = overrides.replica != nil ? "--replica" : "replica.name"
            if !Identifier.isValid(name) {
                r.problem(key, "\"\(name)\" is not valid: \(Identifier.ruleInWords)")
            } else if case .sqlite = c.database {
                r.problem(key, "replicas share one PostgreSQL database; set database (or --db) to a postgres:// URL")
            } else {
                c.replica = name
                c.instance = name
            }
        }
        // Sites
        if let sites = r.value("sites") {
            if let list = sites as? [Any] {
                for (i, item) in list.enumerated() {
                    let key = "sites[\(i)]"
                    guard let site = item as? [String: Any] else { r.problem(key, "expected {id, name, timezone}"); continue }
                    let unknown = Set(site.keys).subtracting(["id", "name", "timezone"])
                    for k in unknown.sorted() { r.problem("\(key).\(k)", "unknown key; expected one of: id, name, timezone") }
                    guard let id = site["id"] as? String, Identifier.isValid(id) else { r.problem("\(key).id", "required: \(Identifier.ruleInWords)"); continue }
                    let tzName = site["timezone"] as? String ?? "UTC"
                    guard let tz = TimeZone(identifier: tzName) else { r.problem("\(key).timezone", "\"\(tzName)\" is not an IANA time zone (e.g. Europe/Berlin)"); continue }
                    if c.sites.contains(where: { $0.id == id }) { r.problem("\(key).id", "site \"\(id)\" is listed twice") }
                    c.sites.append(SiteConfiguration(id: id, name: site["name"] as? String ?? id, timeZone: tz))
                }
            } else {
                r.problem("sites", "expected a list of {id, name, timezone}")
            }
        }
        // Ingest quotas
        if let v = r.double("ingest.device_messages_per_s", in: 0.1...100_000) { c.deviceQuota.messagesPerSecond = v }
        if let v = r.double("ingest.device_bytes_per_s", in: 100...1_073_741_824) { c.deviceQuota.bytesPerSecond = v }
        if let v = r.double("ingest.device_burst_messages", in: 1...10_000_000) { c.deviceQuota.burstMessages = v }
        if let v = r.double("ingest.device_burst_bytes", in: Double(ProtocolLimits.maxPayloadBytes)...17_179_869_184) { c.deviceQuota.burstBytes = v }
        // Retention (0 days: kept for ever)
        if let v = r.double("retention.events_days", in: 0...36_500) { c.retention.eventsDays = v }
        if let v = r.double("retention.sessions_days", in: 0...36_500) { c.retention.sessionsDays = v }
        if let v = r.double("retention.alerts_days", in: 0...36_500) { c.retention.alertsDays = v }
        if let v = r.double("retention.interval_s", in: 1...86_400) { c.retention.intervalSeconds = v }
        // Health
        if let v = r.double("health.disk_free_min_mb", in: 0...100_000_000) { c.health.diskFreeMinMiB = v }
        if let v = r.double("health.stale_factor", in: 1...100) { c.health.staleFactor = v }
        if let v = r.double("health.config_drift_s", in: 1...86_400) { c.health.configDriftSeconds = v }
        if let v = r.double("health.clear_after_s", in: 0...3600) { c.health.clearAfterSeconds = v }
        if let v = r.int("health.pain_signal_count", in: 1...1000) { c.health.painSignalCount = v }
        if let v = r.double("health.pain_signal_window_h", in: 0.1...720) { c.health.painSignalWindowHours = v }
        if let v = r.double("health.command_timeout_s", in: 1...3600) { c.health.commandTimeoutSeconds = v }
        if let v = r.double("health.max_start_ttl_s", in: 10...3600) { c.health.maxStartTTLSeconds = v }
        if let v = r.double("health.resync_interval_s", in: 1...3600) { c.health.resyncIntervalSeconds = v }
        if let v = r.double("health.outbox_drop_window_s", in: 1...604_800) { c.health.outboxDropWindowSeconds = v }
        // Tokens: inline, and/or from a secrets file only its owner can read.
        if let tokens = r.value("tokens") { c.tokens += readTokens(tokens, key: "tokens", into: &r) }
        if let path = r.string("tokens_file") {
            let url = URL(fileURLWithPath: path, relativeTo: base)
            if let text = readSecretFile(url, key: "tokens_file", into: &r) {
                if let loaded = try? YAMLLoader.load(yaml: text) as? [String: Any] {
                    let unknown = Set(loaded.keys).subtracting(["tokens"])
                    for k in unknown.sorted() { r.problem("tokens_file: \(k)", "unknown key; expected: tokens") }
                    if let tokens = loaded["tokens"] { c.tokens += readTokens(tokens, key: "tokens_file: tokens", into: &r) }
                } else {
                    r.problem("tokens_file", "\(url.path) is not a YAML mapping with a tokens list")
                }
            }
        }
        if let admin = overrides.adminToken, !admin.isEmpty {
            c.tokens.append(TokenEntry(name: "env-admin", sha256: TokenEntry.hash(admin), role: .admin))
        }
        if let level = overrides.logLevel ?? r.string("log_level") {
            if let parsed = Logger.Level(rawValue: level) { c.logLevel = parsed } else {
                r.problem(overrides.logLevel != nil ? "--log-level" : "log_level", "expected one of trace, debug, info, notice, warning, error, critical; got \"\(level)\"")
            }
        }
        // `sites` and `tokens` are lists checked above; walk only mappings.
        r.checkUnknownKeys()
        if !r.problems.isEmpty { throw ConfigurationError(source: source, problems: r.problems) }
        return c
    }

    /// The text of a file of secrets, refused when group or others may read it.
    static func readSecretFile(_ url: URL, key: String, into r: inout ConfigReader) -> String? {
        var info = stat()
        guard stat(url.path, &info) == 0, let text = try? String(contentsOf: url, encoding: .utf8) else {
            r.problem(key, "cannot read \(url.path)")
            return nil
        }
        guard info.st_mode & 0o077 == 0 else {
            r.problem(key, "\(url.path) is readable by group or others (mode \(String(info.st_mode & 0o777, radix: 8))); it holds secrets: chmod 600 it")
            return nil
        }
        return text
    }

    /// Why `serve` may not start with this transport (issue 20, item 12):
    /// a broker connection without TLS unless `broker.allow_plaintext`.
    /// (The database's `sslmode` is checked as the URL is read.)
    public var transportProblems: [ConfigurationError.Problem] { broker.transportProblems }

    /// What every start logs at warning level while a transport is insecure on purpose.
    public var transportWarnings: [String] {
        var out = broker.transportWarnings
        if case .postgres(let location) = database, let warning = location.transportWarning { out.append(warning) }
        return out
    }

    static func readTokens(_ value: Any, key: String, into r: inout ConfigReader) -> [TokenEntry] {
        guard let list = value as? [Any] else {
            r.problem(key, "expected a list of {name, sha256, role, sites?}")
            return []
        }
        var out: [TokenEntry] = []
        for (i, item) in list.enumerated() {
            let k = "\(key)[\(i)]"
            guard let t = item as? [String: Any] else { r.problem(k, "expected {name, sha256, role, sites?}"); continue }
            for extra in Set(t.keys).subtracting(["name", "sha256", "role", "sites"]).sorted() {
                r.problem("\(k).\(extra)", extra == "token" ? "plain tokens are not stored; put its SHA-256 in sha256 (fleet-console hash-token)" : "unknown key; expected one of: name, role, sha256, sites")
            }
            guard let name = t["name"] as? String, !name.isEmpty else { r.problem("\(k).name", "required"); continue }
            guard let hex = t["sha256"] as? String, let digest = hexBytes(hex), digest.count == 32 else {
                r.problem("\(k).sha256", "required: 64 hexadecimal characters, the SHA-256 of the token (fleet-console hash-token prints it)"); continue
            }
            guard let roleText = t["role"] as? String, let role = Principal.Role(rawValue: roleText) else {
                r.problem("\(k).role", "expected viewer, operator or admin"); continue
            }
            // Site scope (issue 20, item 7): never open by default. A viewer or
            // operator names its sites, or `["*"]` for every site; an admin
            // without `sites` sees every site.
            var sites: Set<String>?
            if let s = t["sites"] {
                guard let list = s as? [String], !list.isEmpty else {
                    r.problem("\(k).sites", "token '\(name)': expected a list of site ids, or [\"*\"] for every site"); continue
                }
                if list.contains(TokenEntry.everySite) {
                    guard list == [TokenEntry.everySite] else {
                        r.problem("\(k).sites", "token '\(name)': \"*\" (every site) cannot be combined with site ids"); continue
                    }
                    sites = nil
                } else {
                    let bad = list.filter { !Identifier.isValid($0) }
                    guard bad.isEmpty else {
                        r.problem("\(k).sites", "token '\(name)': \(bad.map { "\"\($0)\"" }.joined(separator: ", ")) is not a site id (\(Identifier.ruleInWords))"); continue
                    }
                    sites = Set(list)
                }
            } else if role != .admin {
                r.problem("\(k).sites", "token '\(name)' (\(role.rawValue)) has no sites: list the sites it may see, or write sites: [\"*\"] to let it see every site")
                continue
            }
            out.append(TokenEntry(name: name, sha256: digest, role: role, sites: sites))
        }
        return out
    }

    static func hexBytes(_ hex: String) -> [UInt8]? {
        let chars = Array(hex.lowercased())
        guard chars.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        for i in stride(from: 0, to: chars.count, by: 2) {
            guard let b = UInt8(String(chars[i...i + 1]), radix: 16) else { return nil }
            out.append(b)
        }
        return out
    }
}
