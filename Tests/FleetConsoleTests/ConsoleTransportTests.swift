import FleetTestSupport
import Foundation
import Testing

// Issue 20, items 11 and 12: no silent plain-text or unverified transport,
// no secret on a command line.
extension ConsoleEndToEndTests {
    static let transportSites = "sites:\n  - {id: lab, name: Lab, timezone: UTC}\n"

    @Test("a console without broker.tls and without broker.allow_plaintext exits 2 naming the key and what is expected")
    func plaintextBrokerRefused() async throws {
        let bad = try await ConsoleProcess.runToCompletion(config: "broker: {host: 127.0.0.1, port: 1883}\n" + Self.transportSites)
        #expect(bad.status == .exited(2), "\(bad)")
        for mention in ["broker.tls", "ca_file", "broker.allow_plaintext: true", "clear text"] {
            #expect(bad.standardError.contains(mention), "stderr names \(mention): \(bad.standardError)")
        }
        let flags = try await ConsoleProcess.runToCompletion(config: Self.transportSites, arguments: ["--broker", "127.0.0.1:1883"])
        #expect(flags.status == .exited(2), "--broker without a config's broker.tls: \(flags)")
        #expect(flags.standardError.contains("broker.tls"), "\(flags.standardError)")
    }

    @Test("with broker.allow_plaintext: true the console starts and warns that it connects without TLS, at every start")
    func plaintextBrokerOptInWarns() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        let console = try await ConsoleProcess.start(.init(), broker: broker)
        defer { console.stopNow() }
        let warning = "broker.allow_plaintext is true: connecting to 127.0.0.1:\(broker.port) WITHOUT TLS"
        #expect(console.currentRun?.standardError().contains(warning) == true, "\(console.diagnostics())")
        _ = try await console.stop()
        try await console.restart()
        #expect(console.currentRun?.standardError().contains(warning) == true, "the restart warns again: \(console.diagnostics())")
    }

    @Test("a database URL with a password, or with sslmode=prefer, exits 2 naming --db and what is expected")
    func databaseURLRefusals() async throws {
        let config = "broker: {host: 127.0.0.1, port: 1883, allow_plaintext: true}\n" + Self.transportSites
        let password = try await ConsoleProcess.runToCompletion(
            config: config, arguments: ["--db", "postgres://fleet:hunter2@127.0.0.1:5432/fleet"])
        #expect(password.status == .exited(2), "\(password)")
        for mention in ["--db", "password", "PGPASSWORD", "database_password_file"] {
            #expect(password.standardError.contains(mention), "stderr names \(mention): \(password.standardError)")
        }
        #expect(!password.standardError.contains("hunter2"), "the password is not echoed")
        let prefer = try await ConsoleProcess.runToCompletion(
            config: config, arguments: ["--db", "postgres://fleet@127.0.0.1:5432/fleet?sslmode=prefer"])
        #expect(prefer.status == .exited(2), "\(prefer)")
        for mention in ["--db", "prefer", "verify-full", "disable"] {
            #expect(prefer.standardError.contains(mention), "stderr names \(mention): \(prefer.standardError)")
        }
    }

    @Test("PostgreSQL: without sslmode the console requires verified TLS and refuses a server without it; sslmode=disable connects and warns", .tags(.postgres))
    func databaseTLSRequiredByDefault() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        // The test server speaks plain text only.
        let explicit = try await PostgresServer.shared().createDatabase()
        #expect(explicit.hasSuffix("?sslmode=disable"))
        let implicit = String(explicit.dropLast("?sslmode=disable".count))
        let config = "broker: {host: 127.0.0.1, port: \(broker.port), allow_plaintext: true}\n" + Self.transportSites
        let refused = try await ConsoleProcess.runToCompletion(
            config: config, arguments: ["--db", implicit, "--http", "127.0.0.1:\(try freeLoopbackPort())"], timeout: .seconds(60))
        #expect(refused.status == .exited(1), "no silent plain text: \(refused)")
        #expect(refused.standardError.contains("cannot start"), "\(refused.standardError)")

        let console = try await ConsoleProcess.start(.init(database: explicit), broker: broker)
        defer { console.stopNow() }
        let stderr = console.currentRun?.standardError() ?? ""
        #expect(stderr.contains("database sslmode=disable: connecting to 127.0.0.1"), "\(console.diagnostics())")
        #expect(stderr.contains("WITHOUT TLS"), "\(console.diagnostics())")
    }
}
