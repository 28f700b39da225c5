import Foundation

// Shared by the agent's and the console's YAML configuration files: every
// problem is collected and reported with its dotted key, and unknown keys
// are errors (a typo never passes silently).

/// A configuration problem: the key (dotted path) and what was expected.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        public var key: String
        public var message: String
        public init(key: String, message: String) {
            self.key = key
            self.message = message
        }
        public var description: String { key.isEmpty ? message : "\(key): \(message)" }
    }

    public var source: String
    public var problems: [Problem]

    public init(source: String, problems: [Problem]) {
        self.source = source
        self.problems = problems
    }

    public var description: String {
        "invalid configuration (\(source)):\n" + problems.map { "  - \($0)" }.joined(separator: "\n")
    }
}

/// Reads typed values out of a YAML mapping by dotted key, collecting problems.
public struct ConfigReader {
    public let root: [String: Any]
    public let known: [String: Set<String>]
    public var problems: [ConfigurationError.Problem] = []

    public init(root: [String: Any], known: [String: Set<String>]) {
        self.root = root
        self.known = known
    }

    public mutating func problem(_ key: String, _ message: String) {
        problems.append(.init(key: key, message: message))
    }

    public func value(_ key: String) -> Any? {
        var node: Any = root
        for part in key.split(separator: ".") {
            guard let dict = node as? [String: Any], let next = dict[String(part)] else { return nil }
            node = next
        }
        return node is NSNull ? nil : node
    }

    public func has(_ key: String) -> Bool { value(key) != nil }

    public mutating func string(_ key: String) -> String? {
        guard let v = value(key) else { return nil }
        if let s = v as? String { return s }
        if v is Int || v is Double { return "\(v)" }
        problem(key, "expected a string")
        return nil
    }

    public mutating func int(_ key: String, in range: ClosedRange<Int>) -> Int? {
        guard let v = value(key) else { return nil }
        guard let i = v as? Int else {
            problem(key, "expected an integer from \(range.lowerBound) to \(range.upperBound), got \(v)")
            return nil
        }
        guard range.contains(i) else {
            problem(key, "expected an integer from \(range.lowerBound) to \(range.upperBound), got \(i)")
            return nil
        }
        return i
    }

    public mutating func double(_ key: String, in range: ClosedRange<Double>) -> Double? {
        guard let v = value(key) else { return nil }
        guard let d = (v as? Double) ?? (v as? Int).map(Double.init), d.isFinite else {
            problem(key, "expected a number from \(range.lowerBound) to \(range.upperBound), got \(v)")
            return nil
        }
        guard range.contains(d) else {
            problem(key, "expected a number from \(range.lowerBound) to \(range.upperBound), got \(d)")
            return nil
        }
        return d
    }

    public mutating func bool(_ key: String) -> Bool? {
        guard let v = value(key) else { return nil }
        guard let b = v as? Bool else {
            problem(key, "expected true or false, got \(v)")
            return nil
        }
        return b
    }

    public mutating func identifier(_ text: String?, key: String) -> Identifier? {
        guard let text else {
            problem(key, "required: \(Identifier.ruleInWords)")
            return nil
        }
        guard let id = Identifier(rawValue: text) else {
            problem(key, "\"\(text)\" is not a valid identifier: \(Identifier.ruleInWords)")
            return nil
        }
        return id
    }

    /// An unknown key is a mistake (a typo would otherwise be ignored silently).
    public mutating func checkUnknownKeys() {
        func walk(_ node: [String: Any], _ path: String) {
            let allowed = known[path] ?? []
            for (key, value) in node {
                let full = path.isEmpty ? key : "\(path).\(key)"
                if !allowed.contains(key) {
                    problems.append(.init(key: full, message: "unknown key; expected one of: \(allowed.sorted().joined(separator: ", "))"))
                } else if let child = value as? [String: Any], known[full] != nil {
                    walk(child, full)
                }
            }
        }
        walk(root, "")
    }
}

extension ConfigReader {
    /// Parses YAML text already loaded as a mapping (Yams.load) or reports why not.
    public static func mapping(_ loaded: Any?, source: String) throws(ConfigurationError) -> [String: Any] {
        guard let loaded else { return [:] }
        guard let dict = loaded as? [String: Any] else {
            throw ConfigurationError(source: source, problems: [.init(key: "", message: "expected a YAML mapping of keys at the top level")])
        }
        return dict
    }
}

/// The `broker:` section both configuration files share.
public struct BrokerSettings: Sendable, Equatable {
    public var host = "127.0.0.1"
    public var port = 1883
    public var username: String?
    /// Read from `password_file` (never written in the config itself).
    public var password: String?
    public var caFile: String?
    public var certificateFile: String?
    public var keyFile: String?
    public var verifyHostname = true
    public var keepAliveSeconds = 30
    public var reconnectInitialMilliseconds = 500
    /// 10 s: after an outage every device is back within about 10 s of the broker's
    /// return (fleet-bench storm); while it is down, a thousand devices make
    /// ~200 attempts/s, which a broker shrugs off.
    public var reconnectMaximumMilliseconds = 10_000
    /// `allow_plaintext: true`: the explicit development opt-in to a broker
    /// connection without TLS (issue 20, item 12). Without it, a
    /// configuration without `broker.tls` is refused at start-up
    /// (`transportProblems`); with it, every start logs `transportWarnings`.
    public var allowPlaintext = false

    public init() {}

    public static let keys: Set<String> = ["host", "port", "username", "password_file", "tls", "keepalive_s", "reconnect_initial_ms", "reconnect_max_ms", "allow_plaintext"]
    public static let tlsKeys: Set<String> = ["ca_file", "cert_file", "key_file", "verify_hostname"]

    /// Reads `broker.*`; relative file paths resolve against `base`;
    /// `override` is a `--broker HOST:PORT` flag.
    public static func read(_ reader: inout ConfigReader, base: URL, override: String?) -> BrokerSettings {
        var b = BrokerSettings()
        if let host = reader.string("broker.host") { b.host = host }
        if let port = reader.int("broker.port", in: 1...65535) { b.port = port }
        if let override {
            let parts = override.split(separator: ":", omittingEmptySubsequences: false)
            if parts.count == 2, !parts[0].isEmpty, let port = Int(parts[1]), (1...65535).contains(port) {
                b.host = String(parts[0])
                b.port = port
            } else {
                reader.problem("--broker", "expected HOST:PORT with a port 1–65535, got \"\(override)\"")
            }
        }
        b.username = reader.string("broker.username")
        if let file = reader.string("broker.password_file") {
            let url = URL(fileURLWithPath: file, relativeTo: base)
            if let password = try? String(contentsOf: url, encoding: .utf8) {
                b.password = password.trimmingCharacters(in: .newlines)
            } else {
                reader.problem("broker.password_file", "cannot read \(url.path)")
            }
        }
        if let keepalive = reader.int("broker.keepalive_s", in: 5...3600) { b.keepAliveSeconds = keepalive }
        if let ms = reader.int("broker.reconnect_initial_ms", in: 10...60_000) { b.reconnectInitialMilliseconds = ms }
        if let ms = reader.int("broker.reconnect_max_ms", in: 100...600_000) { b.reconnectMaximumMilliseconds = ms }
        if reader.has("broker.tls") {
            if let ca = reader.string("broker.tls.ca_file") {
                b.caFile = URL(fileURLWithPath: ca, relativeTo: base).path
                b.certificateFile = reader.string("broker.tls.cert_file").map { URL(fileURLWithPath: $0, relativeTo: base).path }
                b.keyFile = reader.string("broker.tls.key_file").map { URL(fileURLWithPath: $0, relativeTo: base).path }
                if let verify = reader.bool("broker.tls.verify_hostname") { b.verifyHostname = verify }
            } else {
                reader.problem("broker.tls.ca_file", "required when broker.tls is present: the CA that signed the broker's certificate")
            }
        }
        if let allow = reader.bool("broker.allow_plaintext") {
            if allow, reader.has("broker.tls") {
                reader.problem("broker.allow_plaintext", "only for a broker without TLS, and broker.tls is set: remove allow_plaintext")
            }
            b.allowPlaintext = allow
        }
        return b
    }

    /// Why this connection may not start (issue 20, item 12): a connection
    /// without TLS is refused unless `broker.allow_plaintext: true` says it
    /// is meant. Checked at start-up by `massage-agent` and `fleet-console
    /// serve`, which exit 2 naming the key.
    public var transportProblems: [ConfigurationError.Problem] {
        guard caFile == nil, !allowPlaintext else { return [] }
        return [.init(key: "broker.tls", message: """
            required: without it the connection to \(host):\(port) is plain MQTT (passwords, commands and data in clear text). \
            Expected broker.tls with ca_file (the CA that signed the broker's certificate), cert_file and key_file; \
            or, for development against a broker on a trusted network only, broker.allow_plaintext: true
            """)]
    }

    /// What every start logs at warning level while an insecure transport
    /// is in use on purpose (empty when the connection is TLS, verified).
    public var transportWarnings: [String] {
        var out: [String] = []
        if caFile == nil, allowPlaintext {
            out.append("broker.allow_plaintext is true: connecting to \(host):\(port) WITHOUT TLS; passwords, commands and data cross the network in clear text (development only)")
        }
        if caFile != nil, !verifyHostname {
            out.append("broker.tls.verify_hostname is false: the broker's certificate is not checked against \(host); any certificate of the CA can pose as the broker (development only)")
        }
        return out
    }
}
