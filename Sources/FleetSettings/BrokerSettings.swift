import Foundation

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
