import FleetProtocol
import FleetSettings
import FleetTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

@testable import FleetConsole

// Issue 20, item 14: the dashboard's live-update streams (Server-Sent Events).
extension ConsoleReplyAndScopeTests {
    /// A signed-in dashboard session: its cookie header, its id and its CSRF token.
    struct DashboardSession {
        var cookie: String
        var id: String
        var csrf: String
    }

    static func signInSession(_ client: some TestClientProtocol, token: String) async throws -> DashboardSession {
        let cookie = try await dashboardCookie(client, token: token)
        let id = String(try #require(cookie.split(separator: "=", maxSplits: 1).last))
        let page = String(buffer: try await client.execute(uri: "/", method: .get, headers: [.cookie: cookie]).body)
        let marker = #"name="csrf" value=""#
        let start = try #require(page.range(of: marker), "the overview has a CSRF field: \(page)")
        let csrf = String(page[start.upperBound...].prefix { $0 != "\"" })
        return DashboardSession(cookie: cookie, id: id, csrf: csrf)
    }

    @Test("a dashboard session holds at most dashboard.max_streams_per_session live-update streams, one more is 429 too_many_streams; signing out or removing its token ends its streams within seconds",
          .timeLimit(.minutes(1)))
    func liveStreamsAreCappedAndEndWithTheSession() async throws {
        let viewerToken = "north-screen-token", otherToken = "north-desk-token"
        let tokens = [
            TokenEntry(name: "north-screen", sha256: TokenEntry.hash(viewerToken), role: .viewer, sites: ["clinic-north"]),
            TokenEntry(name: "north-desk", sha256: TokenEntry.hash(otherToken), role: .viewer, sites: ["clinic-north"]),
        ]
        try await Self.withCore(tokens: tokens, configure: { $0.maxStreamsPerSession = 2 }) { core in
            Self.announce(Self.north, to: core)
            let dashboard = try Dashboard(core: core)
            let router = HTTPAPI.router(core: core, dashboard: dashboard)
            let app = Application(router: router, logger: Logger(label: "test.http"))
            try await app.test(.router) { client in
                let first = try await Self.signInSession(client, token: viewerToken)
                let second = try await Self.signInSession(client, token: viewerToken)
                let other = try await Self.signInSession(client, token: otherToken)
                let bodies = LockedBox<[String]>([])
                try await withThrowingTaskGroup(of: Void.self) { group in
                    func open(_ session: DashboardSession, _ path: String) {
                        group.addTask {
                            let response = try await client.execute(uri: path, method: .get, headers: [.cookie: session.cookie])
                            bodies.mutex.withLock { $0.append("\(response.status.code) \(path): \(String(buffer: response.body))") }
                        }
                    }
                    defer { group.cancelAll() }
                    open(first, "/events/overview")
                    open(first, "/events/devices/\(Self.north)")
                    try await waitUntil(timeout: .seconds(10), "the first session's two streams are open") {
                        dashboard.streams.count(session: first.id) == 2
                    }
                    // One more is refused at once, with a stable code; other sessions have their own allowance.
                    let refusal = LockedBox<(status: Int, body: String)?>(nil)
                    group.addTask {
                        let response = try await client.execute(uri: "/events/overview", method: .get, headers: [.cookie: first.cookie])
                        refusal.mutex.withLock { $0 = (response.status.code, String(buffer: response.body)) }
                    }
                    let refused = try await waitForValue(timeout: .seconds(5), "a third stream of the session is answered at once") {
                        refusal.mutex.withLock { $0 }
                    }
                    #expect(refused.status == 429, "\(refused)")
                    #expect(refused.body.contains(#""code":"too_many_streams""#), "\(refused.body)")
                    #expect(refused.body.contains("dashboard.max_streams_per_session"), "\(refused.body)")
                    open(second, "/events/overview")
                    open(other, "/events/overview")
                    try await waitUntil(timeout: .seconds(10), "the other sessions' streams are open") {
                        dashboard.streams.count(session: second.id) == 1 && dashboard.streams.count(session: other.id) == 1
                    }
                    #expect(dashboard.streams.count(session: first.id) == 2, "a refused stream holds no slot")

                    // Signing out ends that session's streams, and only those.
                    let signOut = try await client.execute(uri: "/logout", method: .post, headers: [.cookie: first.cookie, .contentType: "application/x-www-form-urlencoded"],
                                                           body: ByteBuffer(string: "csrf=\(first.csrf)"))
                    #expect(signOut.status == .seeOther)
                    try await waitUntil(timeout: .seconds(5), "the signed-out session's streams end") {
                        dashboard.streams.count(session: first.id) == 0 && bodies.mutex.withLock { $0.count } == 2
                    }
                    #expect(dashboard.streams.count(session: second.id) == 1 && dashboard.streams.count(session: other.id) == 1)

                    // Removing the token ends every session signed in with it (pages too).
                    core.access.replaceTokens(tokens.filter { $0.name != "north-screen" })
                    try await waitUntil(timeout: .seconds(5), "the removed token's streams end") {
                        dashboard.streams.count(session: second.id) == 0 && bodies.mutex.withLock { $0.count } == 3
                    }
                    #expect(dashboard.streams.count(session: other.id) == 1, "another token's stream goes on")
                    let page = try await client.execute(uri: "/", method: .get, headers: [.cookie: second.cookie])
                    #expect(page.status == .seeOther && page.headers[.location] == "/login", "\(page.status)")
                    let again = try await client.execute(uri: "/events/overview", method: .get, headers: [.cookie: second.cookie])
                    #expect(again.status == .unauthorized)

                    for body in bodies.mutex.withLock({ $0 }) {
                        #expect(body.hasPrefix("200 ") && body.contains("data: ") && body.contains("event: signed_out"), "\(body)")
                    }
                }
            }
        }
    }

    @Test("dashboard.max_streams_per_session is 10 unless set, and takes 1 to 100")
    func maxStreamsPerSessionKey() throws {
        #expect(try Self.load("sites: []\n").maxStreamsPerSession == 10)
        #expect(try Self.load("dashboard:\n  max_streams_per_session: 3\n").maxStreamsPerSession == 3)
        for bad in ["0", "1000", "many"] {
            let error = #expect(throws: ConfigurationError.self) { try Self.load("dashboard:\n  max_streams_per_session: \(bad)\n") }
            #expect(error?.problems.first?.key == "dashboard.max_streams_per_session", "\(bad): \(String(describing: error))")
        }
    }
}
