@testable import FleetConsole
import FleetProtocol
import FleetSettings
import FleetTestSupport
import Foundation
import Testing

@Suite("Console configuration and tokens")
struct ConsoleConfigurationTests {
    func write(_ text: String, in dir: TemporaryDirectory, name: String = "console.yaml", mode: Int = 0o600) throws -> URL {
        let url = dir.url.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: url.path)
        return url
    }

    @Test("the shipped example configuration loads")
    func shipped() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let c = try ConsoleConfiguration.load(file: repo.appendingPathComponent("Config/console.yaml"))
        #expect(c.sites.map(\.id) == ["clinic-north", "spa-south"])
        #expect(c.sites[0].timeZone.identifier == "Europe/Berlin")
        #expect(c.httpPort == 8080)
    }

    @Test("tokens are stored hashed; a plain token in the file is refused with what to do instead")
    func tokens() throws {
        let dir = try TemporaryDirectory(prefix: "console-config")
        let hash = TokenEntry.hex(TokenEntry.hash("s3cret"))
        let good = try write("tokens:\n  - {name: desk, sha256: \(hash), role: operator, sites: [clinic-north]}\n", in: dir)
        let c = try ConsoleConfiguration.load(file: good, overrides: ConsoleOverrides(adminToken: "boot"))
        #expect(c.tokens.count == 2)
        #expect(c.tokens[0].role == .operator && c.tokens[0].sites == ["clinic-north"])
        #expect(c.tokens[1].name == "env-admin" && c.tokens[1].role == .admin)

        let plain = try write("tokens:\n  - {name: desk, token: s3cret, role: operator}\n", in: dir, name: "plain.yaml")
        let error = #expect(throws: ConfigurationError.self) { try ConsoleConfiguration.load(file: plain) }
        #expect(error?.problems.contains { $0.key == "tokens[0].token" && $0.message.contains("hash-token") } == true)
        #expect(error?.problems.contains { $0.key == "tokens[0].sha256" } == true)
    }

    @Test("a secrets file readable by others is refused, naming the key and the fix")
    func secretsFileMode() throws {
        let dir = try TemporaryDirectory(prefix: "console-secrets")
        let hash = TokenEntry.hex(TokenEntry.hash("s3cret"))
        _ = try write("tokens:\n  - {name: head-office, sha256: \(hash), role: admin}\n", in: dir, name: "secrets.yaml", mode: 0o644)
        let config = try write("tokens_file: secrets.yaml\n", in: dir)
        let error = #expect(throws: ConfigurationError.self) { try ConsoleConfiguration.load(file: config) }
        #expect(error?.problems.first?.key == "tokens_file")
        #expect(error?.problems.first?.message.contains("chmod 600") == true)

        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: dir.url.appendingPathComponent("secrets.yaml").path)
        let c = try ConsoleConfiguration.load(file: config)
        #expect(c.tokens.map(\.name) == ["head-office"])
    }

    @Test("every problem names its key and what was expected")
    func problems() throws {
        let dir = try TemporaryDirectory(prefix: "console-config")
        let bad = try write("""
            http: nowhere
            sites:
              - {id: Clinic A, timezone: Mars/Olympus}
            health: {stale_factor: 0}
            colour: blue
            """, in: dir)
        let error = #expect(throws: ConfigurationError.self) { try ConsoleConfiguration.load(file: bad) }
        let keys = Set(error?.problems.map(\.key) ?? [])
        #expect(keys.isSuperset(of: ["http", "sites[0].id", "health.stale_factor", "colour"]))
    }

    @Test("database: a path is SQLite relative to the file, a postgres:// URL is PostgreSQL; a bad URL names the key and the expected form")
    func database() throws {
        let dir = try TemporaryDirectory(prefix: "console-config")
        let sqlite = try ConsoleConfiguration.load(file: try write("database: data/fleet.sqlite\n", in: dir))
        #expect(sqlite.database == .sqlite(path: dir.url.appendingPathComponent("data/fleet.sqlite").path))

        let pg = try ConsoleConfiguration.load(file: try write("database: postgres://fleet@db.example:6543/console?sslmode=require\n", in: dir, name: "pg.yaml"))
        guard case .postgres(let location) = pg.database else { Issue.record("expected PostgreSQL, got \(pg.database)"); return }
        #expect(location.host == "db.example" && location.port == 6543 && location.user == "fleet")
        #expect(location.database == "console" && location.sslMode == .require)
        #expect(pg.database.description == "postgres://fleet@db.example:6543/console")

        for (bad, why) in [("postgres://db.example/console", "no user"), ("postgres://u@db.example/", "names no database"),
                           ("postgres://u@db.example/c?sslmode=maybe", "sslmode"), ("postgres://u@db.example/c?pool=3", "unknown URL parameter")] {
            let error = #expect(throws: ConfigurationError.self) { try ConsoleConfiguration.load(file: try write("database: \"\(bad)\"\n", in: dir, name: "bad.yaml")) }
            #expect(error?.problems.contains { $0.key == "database" && $0.message.contains(why) && $0.message.contains("expected postgres://") } == true, "\(bad): \(String(describing: error))")
        }
        let flag = #expect(throws: ConfigurationError.self) { try ConsoleConfiguration.load(file: nil, overrides: ConsoleOverrides(database: "postgres://nohost")) }
        #expect(flag?.problems.contains { $0.key == "--db" } == true)
    }

    @Test("database TLS: verify-full unless the URL says otherwise; prefer and allow are refused; sslrootcert names the CA; require and disable warn (issue 20, item 12)")
    func databaseTransport() throws {
        let dir = try TemporaryDirectory(prefix: "console-config")
        func location(_ url: String) throws -> PostgresLocation {
            let c = try ConsoleConfiguration.load(file: try write("database: \"\(url)\"\n", in: dir, name: "pg.yaml"))
            guard case .postgres(let location) = c.database else { throw ConfigurationError(source: url, problems: []) }
            return location
        }
        let strict = try location("postgres://fleet@db.example/console")
        #expect(strict.sslMode == .verifyFull && strict.sslRootCertificate == nil && strict.transportWarning == nil)
        #expect(strict.tlsConfiguration.map { "\($0.certificateVerification)" } == "fullVerification")
        let ca = try location("postgres://fleet@db.example/console?sslmode=verify-ca&sslrootcert=/etc/fleet-console/db-ca.crt")
        #expect(ca.sslMode == .verifyCA && ca.sslRootCertificate == "/etc/fleet-console/db-ca.crt" && ca.transportWarning == nil)
        #expect(ca.tlsConfiguration.map { "\($0.certificateVerification)" } == "noHostnameVerification")
        let disabled = try location("postgres://fleet@db.example/console?sslmode=disable")
        #expect(disabled.tlsConfiguration == nil)
        #expect(disabled.transportWarning?.contains("WITHOUT TLS") == true)
        #expect(try location("postgres://fleet@db.example/console?sslmode=require").transportWarning?.contains("WITHOUT checking") == true)

        for (bad, why) in [("postgres://u@db.example/c?sslmode=prefer", "falls back to plain text"), ("postgres://u@db.example/c?sslmode=allow", "falls back to plain text"),
                           ("postgres://u@db.example/c?sslmode=disable&sslrootcert=/ca.crt", "sslrootcert is only used with")] {
            let error = #expect(throws: ConfigurationError.self) { try ConsoleConfiguration.load(file: try write("database: \"\(bad)\"\n", in: dir, name: "bad.yaml")) }
            #expect(error?.problems.contains { $0.key == "database" && $0.message.contains(why) && $0.message.contains("verify-full") } == true, "\(bad): \(String(describing: error))")
        }
    }

    @Test("a database password is never in the URL: refused naming the key; it comes from PGPASSWORD or database_password_file, a 0600 file (issue 20, item 11)")
    func databasePassword() throws {
        let dir = try TemporaryDirectory(prefix: "console-config")
        let inURL = #expect(throws: ConfigurationError.self) {
            try ConsoleConfiguration.load(file: try write("database: postgres://fleet:hunter2@db.example/console\n", in: dir))
        }
        #expect(inURL?.problems.contains { $0.key == "database" && $0.message.contains("PGPASSWORD") && $0.message.contains("database_password_file") } == true,
                "\(String(describing: inURL))")
        #expect(inURL.map { "\($0)" }?.contains("hunter2") == false, "the password is not repeated")
        let flag = #expect(throws: ConfigurationError.self) {
            try ConsoleConfiguration.load(file: nil, overrides: ConsoleOverrides(database: "postgres://fleet:hunter2@db.example/console"))
        }
        #expect(flag?.problems.contains { $0.key == "--db" } == true)

        #expect(try PostgresLocation(url: "postgres://fleet@db.example/c", environment: ["PGPASSWORD": "from-env"]).password == "from-env")
        _ = try write("from-file\n", in: dir, name: "db-password")
        let c = try ConsoleConfiguration.load(file: try write("database: postgres://fleet@db.example/console\ndatabase_password_file: db-password\n", in: dir))
        guard case .postgres(let location) = c.database else { Issue.record("expected PostgreSQL"); return }
        #expect(location.password == "from-file")
        _ = try write("from-file\n", in: dir, name: "open-password", mode: 0o644)
        let open = #expect(throws: ConfigurationError.self) {
            try ConsoleConfiguration.load(file: try write("database: postgres://fleet@db.example/console\ndatabase_password_file: open-password\n", in: dir))
        }
        #expect(open?.problems.contains { $0.key == "database_password_file" && $0.message.contains("chmod 600") } == true, "\(String(describing: open))")
        let sqlite = #expect(throws: ConfigurationError.self) {
            try ConsoleConfiguration.load(file: try write("database: fleet.sqlite\ndatabase_password_file: db-password\n", in: dir))
        }
        #expect(sqlite?.problems.contains { $0.key == "database_password_file" } == true)
    }

    @Test("broker transport: no broker.tls is a start-up problem unless broker.allow_plaintext; the opt-in warns; it contradicts broker.tls (issue 20, item 12)")
    func brokerTransport() throws {
        let dir = try TemporaryDirectory(prefix: "console-config")
        let plain = try ConsoleConfiguration.load(file: try write("broker: {host: 127.0.0.1, port: 1883}\n", in: dir))
        #expect(plain.transportProblems.map(\.key) == ["broker.tls"])
        #expect(plain.transportProblems.first?.message.contains("broker.allow_plaintext: true") == true)
        let optIn = try ConsoleConfiguration.load(file: try write("broker: {host: 127.0.0.1, port: 1883, allow_plaintext: true}\n", in: dir))
        #expect(optIn.transportProblems.isEmpty)
        #expect(optIn.transportWarnings.contains { $0.contains("WITHOUT TLS") })
        _ = try write("ca", in: dir, name: "ca.crt")
        let tls = try ConsoleConfiguration.load(file: try write("broker: {tls: {ca_file: ca.crt}}\n", in: dir))
        #expect(tls.transportProblems.isEmpty && tls.transportWarnings.isEmpty)
        let unchecked = try ConsoleConfiguration.load(file: try write("broker: {tls: {ca_file: ca.crt, verify_hostname: false}}\n", in: dir))
        #expect(unchecked.transportWarnings.contains { $0.contains("verify_hostname is false") })
        let both = #expect(throws: ConfigurationError.self) {
            try ConsoleConfiguration.load(file: try write("broker: {allow_plaintext: true, tls: {ca_file: ca.crt}}\n", in: dir))
        }
        #expect(both?.problems.contains { $0.key == "broker.allow_plaintext" } == true)
    }

    @Test("digests compare in constant time and only equal digests match")
    func constantTime() {
        let a = TokenEntry.hash("one"), b = TokenEntry.hash("two")
        #expect(constantTimeEqual(a, a))
        #expect(!constantTimeEqual(a, b))
        #expect(!constantTimeEqual(a, Array(a.dropLast())))
    }
}
