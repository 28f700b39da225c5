import FleetProtocol
import FleetSettings
import FleetTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Mosquitto
import Testing

@testable import FleetConsole

/// The console's side of issue 20's items 3 (replies), 6 and 7 (site scope),
/// 8 (the session cookie) and 14 (live-update streams), on a console core
/// with its own SQLite file and an MQTT client that never connects: messages
/// go in through `receive`, as the broker would deliver them, and HTTP
/// through the router.
@Suite("console: reply topics, site scope, session cookie, live streams")
struct ConsoleReplyAndScopeTests {
    static let north = try! DeviceAddress(site: "clinic-north", device: "massager-01")
    static let south = try! DeviceAddress(site: "spa-south", device: "massager-01")

    static func withCore(tokens: [TokenEntry] = [], secureCookies: CookieSecurity = .off,
                         configure: (inout ConsoleConfiguration) -> Void = { _ in },
                         _ body: (ConsoleCore) async throws -> Void) async throws {
        let directory = try TemporaryDirectory(prefix: "console-reply-scope")
        var configuration = ConsoleConfiguration(databasePath: directory.file("console.sqlite").path)
        configuration.tokens = tokens
        configuration.secureCookies = secureCookies
        configure(&configuration)
        var logger = Logger(label: "test.console")
        logger.logLevel = .critical
        let core = try await ConsoleCore(configuration: configuration, logger: logger)
        do { try await body(core) } catch {
            await core.store.close()
            throw error
        }
        await core.store.close()
    }

    /// Makes `address` known and online, as its retained birth would.
    static func announce(_ address: DeviceAddress, programs: [String] = ["calf-release"], to core: ConsoleCore) {
        let list = programs.map { "\"\($0)\"" }.joined(separator: ", ")
        let status = #"{"state": "online", "agent_version": "1.0.0", "epoch": 1, "seq": 1, "ts": "2025-03-01T10:00:00.000Z", "programs": [\#(list)], "config_version": 0, "capabilities": []}"#
        core.ingest.receive(MQTTMessage(topic: core.configuration.topicRoot.topic(.status, for: address), payload: Array(status.utf8), qos: .atLeastOnce, retain: true))
    }

    // MARK: Item 3: replies

    @Test("a reply counts only when it is live and on the replying device's own reply topic; a retained one is ignored")
    func retainedAndMisaddressedRepliesIgnored() async throws {
        try await Self.withCore { core in
            Self.announce(Self.north, to: core)
            Self.announce(Self.south, to: core)
            let admin = Principal(name: "admin", role: .admin)
            // The client never connects, so the copy stays queued with its nonce.
            let record = try await core.commands.submit(CommandSubmission(action: "ping", targets: .init(devices: ["\(Self.north)"])), by: admin)
            let nonce = try #require(core.commands.inFlight.withLock { $0[record.id]?.results.first?.nonce })
            let correlation = Array("\(record.id)\n\(Self.north)\n\(nonce)".utf8)
            func reply(_ marker: String, topic: String, retain: Bool) {
                let payload = #"{"id": "\#(record.id)/\#(Self.north.site)/\#(Self.north.device)", "ok": true, "result": {"marker": "\#(marker)"}}"#
                core.ingest.receive(MQTTMessage(topic: topic, payload: Array(payload.utf8), qos: .atLeastOnce, retain: retain,
                                         properties: MQTTProperties(correlationData: correlation)))
            }
            func state() -> (CommandState?, JSONValue?) {
                let r = core.commands.inFlight.withLock { $0[record.id]?.results.first } ?? core.state.pending.withLock { $0.commands[record.id]?.results.first }
                return (r?.state, r?.result)
            }
            let own = core.ingest.topics.replyTopic(for: Self.north)
            #expect(own == "massage/v1/_console/reply/console/clinic-north/massager-01")
            #expect(core.ingest.topics.subscriptions.map(\.filter).contains("massage/v1/_console/reply/console/+/+"))

            // Retained (a replay of what a device stored at the broker), the
            // shared topic of old, another device's reply topic, a deeper one.
            reply("retained", topic: own, retain: true)
            reply("shared", topic: core.ingest.topics.replyTopic, retain: false)
            reply("other device", topic: core.ingest.topics.replyTopic(for: Self.south), retain: false)
            reply("deeper", topic: own + "/x", retain: false)
            #expect(state().0 == .queued, "a reply that must be ignored was applied: \(state())")

            reply("live", topic: own, retain: false)
            #expect(state().0 == .succeeded)
            #expect(state().1?["marker"]?.stringValue == "live")
        }
    }

    // MARK: Item 7: site scope

    static let hash = String(repeating: "ab", count: 32)

    static func load(_ yaml: String) throws(ConfigurationError) -> ConsoleConfiguration {
        let directory = try! TemporaryDirectory(prefix: "console-scope-config")
        let file = directory.file("console.yaml")
        try! yaml.write(to: file, atomically: true, encoding: .utf8)
        return try ConsoleConfiguration.load(file: file)
    }

    @Test("a viewer or operator token without sites is refused, naming the token; sites: [\"*\"] is every site, said explicitly",
          arguments: ["viewer", "operator"])
    func tokensWithoutSitesRefused(_ role: String) throws {
        let error = #expect(throws: ConfigurationError.self) {
            try Self.load("tokens:\n  - {name: admin, sha256: \(Self.hash), role: admin}\n  - {name: north-desk, sha256: \(Self.hash), role: \(role)}\n")
        }
        let problem = error?.problems.first
        #expect(problem?.key == "tokens[1].sites", "\(String(describing: error))")
        #expect(problem?.message.contains("north-desk") == true, "\(String(describing: error))")
        #expect(error?.problems.count == 1, "the admin token without sites is fine: \(String(describing: error))")

        let every = try Self.load("tokens:\n  - {name: support, sha256: \(Self.hash), role: \(role), sites: [\"*\"]}\n")
        #expect(every.tokens.first?.sites == nil)
        let support = Principal(name: "support", role: .viewer, sites: every.tokens.first?.sites)
        #expect(support.canSee(site: "anywhere"))
        let scoped = try Self.load("tokens:\n  - {name: desk, sha256: \(Self.hash), role: \(role), sites: [clinic-north]}\n")
        #expect(scoped.tokens.first?.sites == ["clinic-north"])

        for bad in [#"["*", clinic-north]"#, "[]", #"["Clinic North"]"#] {
            let error = #expect(throws: ConfigurationError.self, "sites: \(bad)") {
                try Self.load("tokens:\n  - {name: desk, sha256: \(Self.hash), role: \(role), sites: \(bad)}\n")
            }
            #expect(error?.problems.first?.key == "tokens[0].sites", "sites: \(bad): \(String(describing: error))")
        }
    }

    @Test("an admin token limited to sites cannot read the audit log; an unlimited admin can")
    func scopedAdminAuditLog() async throws {
        try await Self.withCore { core in
            let scoped = Principal(name: "north-admin", role: .admin, sites: ["clinic-north"])
            let error = await #expect(throws: ConsoleError.self) { try await core.audit.entries(for: scoped, limit: 10) }
            #expect(error?.status == 403)
            #expect(error?.message.contains("north-admin") == true)
            _ = try await core.audit.entries(for: Principal(name: "head-office", role: .admin), limit: 10)
        }
    }

    // MARK: Item 8: the session cookie

    static let token = "cookie-test-token"

    /// Signs in through the dashboard and returns the Set-Cookie header.
    static func signIn(_ mode: CookieSecurity, headers: HTTPFields = [:]) async throws -> String? {
        let cookie = LockedBox<String?>(nil)
        try await withCore(tokens: [TokenEntry(name: "desk", sha256: TokenEntry.hash(token), role: .viewer, sites: ["clinic-north"])],
                           secureCookies: mode) { core in
            let app = try HTTPAPI.makeApplication(core: core, logger: Logger(label: "test.http"))
            try await app.test(.router) { client in
                var h = headers
                h[.contentType] = "application/x-www-form-urlencoded"
                let response = try await client.execute(uri: "/login", method: .post, headers: h, body: ByteBuffer(string: "token=\(token)"))
                #expect(response.status == .seeOther)
                cookie.mutex.withLock { $0 = response.headers[.setCookie] }
            }
        }
        return cookie.mutex.withLock { $0 }
    }

    @Test("the session cookie is Secure and __Host- when the console is served over TLS (secure_cookies: true), or when a trusted proxy says https")
    func secureSessionCookie() async throws {
        let plain = try #require(try await Self.signIn(.off))
        #expect(plain.hasPrefix("fc_session="))
        #expect(!plain.contains("Secure"))

        let tls = try #require(try await Self.signIn(.always))
        #expect(tls.hasPrefix("__Host-fc_session="), "\(tls)")
        #expect(tls.contains("; Secure"), "\(tls)")
        #expect(tls.contains("; Path=/") && tls.contains("HttpOnly") && tls.contains("SameSite=Strict"), "\(tls)")
        #expect(!tls.contains("Domain"), "__Host- cookies must not name a domain: \(tls)")

        let proto = try #require(HTTPField.Name("X-Forwarded-Proto"))
        let proxied = try #require(try await Self.signIn(.forwardedProto, headers: [proto: "https"]))
        #expect(proxied.hasPrefix("__Host-fc_session=") && proxied.contains("; Secure"), "\(proxied)")
        let direct = try #require(try await Self.signIn(.forwardedProto))
        #expect(direct.hasPrefix("fc_session=") && !direct.contains("Secure"), "\(direct)")
        // The header counts only when configured: sent to a console that
        // does not trust it, it changes nothing.
        let untrusted = try #require(try await Self.signIn(.off, headers: [proto: "https"]))
        #expect(untrusted.hasPrefix("fc_session=") && !untrusted.contains("Secure"), "\(untrusted)")
    }

    @Test("secure_cookies accepts true, false and \"forwarded\"; anything else names the key")
    func secureCookiesKey() throws {
        #expect(try Self.load("secure_cookies: true\n").secureCookies == .always)
        #expect(try Self.load("secure_cookies: false\n").secureCookies == .off)
        #expect(try Self.load("secure_cookies: forwarded\n").secureCookies == .forwardedProto)
        #expect(try Self.load("sites: []\n").secureCookies == .off)
        let error = #expect(throws: ConfigurationError.self) { try Self.load("secure_cookies: maybe\n") }
        #expect(error?.problems.first?.key == "secure_cookies")
    }
}
