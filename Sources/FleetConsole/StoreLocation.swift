import Foundation
import Logging

/// The `database` setting: a SQLite file path, or a PostgreSQL URL.
public enum StoreLocation: Sendable, Equatable {
    case sqlite(path: String)
    case postgres(PostgresLocation)

    /// `postgres://` and `postgresql://` URLs are PostgreSQL; anything else a file path.
    public static func parse(_ text: String, relativeTo base: URL? = nil) throws(StoreLocationError) -> StoreLocation {
        if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            return .postgres(try PostgresLocation(url: text))
        }
        guard !text.isEmpty else { throw StoreLocationError(message: "expected a SQLite file path or a postgres:// URL, got an empty string") }
        return .sqlite(path: URL(fileURLWithPath: text, relativeTo: base).path)
    }

    /// What logs and the health page show: the path, or the URL without its password.
    public var description: String {
        switch self {
        case .sqlite(let path): return path
        case .postgres(let p): return p.redacted
        }
    }

    /// Opens (and migrates) the store.
    public func open(logger: Logger) async throws -> any ConsoleStore {
        switch self {
        case .sqlite(let path): return try SQLiteStore(path: path, logger: logger)
        case .postgres(let location): return try await PostgresStore(location: location, logger: logger)
        }
    }
}

/// How the console's PostgreSQL connection is protected: libpq's `sslmode`
/// names, minus the modes that fall back to plain text without a word
/// (`prefer`, `allow`; issue 20, item 12).
public enum PostgresSSLMode: String, Sendable, Equatable, CaseIterable {
    /// TLS; the server's certificate chains to the trusted CAs and names the host (the default).
    case verifyFull = "verify-full"
    /// TLS; the certificate chains to the trusted CAs, its name is not checked.
    case verifyCA = "verify-ca"
    /// Development only: TLS without checking the certificate (anyone in the path can read it).
    case require
    /// Development only: plain text.
    case disable

    /// The modes a production setting may use without a warning.
    public var isVerified: Bool { self == .verifyFull || self == .verifyCA }
}

/// `postgres://USER@HOST[:PORT]/DATABASE[?sslmode=…&sslrootcert=FILE]`.
/// The password is never in the URL (it would show in `ps`, shell history
/// and every copy of the configuration; issue 20, item 11): it comes from
/// `PGPASSWORD` in the environment, or the console's `database_password_file`.
public struct PostgresLocation: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String
    public var sslMode: PostgresSSLMode
    /// `sslrootcert`: the CA file the server's certificate must chain to
    /// (nil: the system's trusted CAs).
    public var sslRootCertificate: String?

    public static let form = "postgres://USER@HOST[:PORT]/DATABASE[?sslmode=verify-full|verify-ca|require|disable][&sslrootcert=CA_FILE] (the password in PGPASSWORD or database_password_file, never in the URL)"

    public init(url: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(StoreLocationError) {
        func bad(_ why: String) -> StoreLocationError {
            StoreLocationError(message: "\(why); expected \(Self.form)")
        }
        guard let c = URLComponents(string: url) else { throw bad("not a URL") }
        guard let host = c.host, !host.isEmpty else { throw bad("the URL has no host") }
        guard let user = c.user, !user.isEmpty else { throw bad("the URL has no user") }
        if c.password != nil {
            throw StoreLocationError(message: """
                the URL holds a password, which would show in `ps`, shell history and every copy of the configuration: \
                remove it and put the password in PGPASSWORD (the environment; systemd: EnvironmentFile= with mode 0600) \
                or in a file named by database_password_file
                """)
        }
        let database = String(c.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty, !database.contains("/") else { throw bad("the URL names no database") }
        let port = c.port ?? 5432
        guard (1...65535).contains(port) else { throw bad("port \(port) is out of range") }
        var sslMode = PostgresSSLMode.verifyFull
        var rootCertificate: String?
        for item in c.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let v = item.value, let mode = PostgresSSLMode(rawValue: v) else {
                    let why = ["prefer", "allow"].contains(item.value ?? "")
                        ? "sslmode \"\(item.value ?? "")\" falls back to plain text without a word and is refused"
                        : "sslmode \"\(item.value ?? "")\" is not one of \(PostgresSSLMode.allCases.map(\.rawValue).joined(separator: ", "))"
                    throw bad(why)
                }
                sslMode = mode
            case "sslrootcert":
                guard let v = item.value, !v.isEmpty else { throw bad("sslrootcert is empty: expected the CA certificate file (PEM)") }
                rootCertificate = v
            default:
                throw bad("unknown URL parameter \"\(item.name)\"")
            }
        }
        if rootCertificate != nil, !sslMode.isVerified {
            throw bad("sslrootcert is only used with sslmode=verify-full or verify-ca, not \(sslMode.rawValue)")
        }
        self.host = host
        self.port = port
        // URLComponents decodes the user once already.
        self.user = user
        self.password = environment["PGPASSWORD"]
        self.database = database
        self.sslMode = sslMode
        self.sslRootCertificate = rootCertificate
    }

    public var redacted: String { "postgres://\(user)@\(host):\(port)/\(database)" }

    /// What every start logs at warning level when the connection is not
    /// verified TLS (the URL asked for it explicitly).
    public var transportWarning: String? {
        switch sslMode {
        case .verifyFull, .verifyCA: return nil
        case .require: return "database sslmode=require: TLS to \(host):\(port) WITHOUT checking the server's certificate; anyone in the path can pose as the database (development only)"
        case .disable: return "database sslmode=disable: connecting to \(host):\(port) WITHOUT TLS; the password and every row cross the network in clear text (development only)"
        }
    }
}

/// Why a `database` setting is not usable (the configuration names the key).
public struct StoreLocationError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
