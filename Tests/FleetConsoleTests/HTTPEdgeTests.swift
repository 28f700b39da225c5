import FleetProtocol
import FleetTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Synchronization
import Testing

@testable import FleetConsole

/// The HTTP edge (issue 22, item 4): one authentication step, each route's
/// role and sites declared with it, domain errors mapped to statuses at the
/// edge, and anything else a logged 500 `internal` that tells nothing of
/// the console's insides. Through the router, on a console core that never
/// connects (ConsoleReplyAndScopeTests.withCore).
@Suite("console HTTP edge: authentication, roles, site scope, errors")
struct HTTPEdgeTests {
    static let north = ConsoleReplyAndScopeTests.north
    static let south = ConsoleReplyAndScopeTests.south

    static let viewer = "edge-viewer-token", operatorToken = "edge-operator-token", admin = "edge-admin-token"
    static let northViewer = "edge-north-viewer-token", northOperator = "edge-north-operator-token", northAdmin = "edge-north-admin-token"
    static let tokens = [
        TokenEntry(name: "screen", sha256: TokenEntry.hash(viewer), role: .viewer, sites: nil),
        TokenEntry(name: "desk", sha256: TokenEntry.hash(operatorToken), role: .operator, sites: nil),
        TokenEntry(name: "head-office", sha256: TokenEntry.hash(admin), role: .admin),
        TokenEntry(name: "north-screen", sha256: TokenEntry.hash(northViewer), role: .viewer, sites: ["clinic-north"]),
        TokenEntry(name: "north-desk", sha256: TokenEntry.hash(northOperator), role: .operator, sites: ["clinic-north"]),
        TokenEntry(name: "north-admin", sha256: TokenEntry.hash(northAdmin), role: .admin, sites: ["clinic-north"]),
    ]

    /// One route of the API, with the least role that may call it.
    struct Route: CustomStringConvertible, Sendable {
        var method: HTTPRequest.Method
        var path: String
        var body: String?
        var role: Principal.Role
        var description: String { "\(method.rawValue) \(path)" }
    }

    static let ping = #"{"action": "ping", "targets": {"devices": ["clinic-north/massager-01"]}, "ttl_s": 30}"#

    /// Every route family of the API.
    static let protectedRoutes: [Route] = [
        Route(method: .get, path: "/api/v1/sites", role: .viewer),
        Route(method: .get, path: "/api/v1/devices", role: .viewer),
        Route(method: .get, path: "/api/v1/devices/clinic-north/massager-01", role: .viewer),
        Route(method: .post, path: "/api/v1/devices/clinic-north/massager-01/forget", role: .admin),
        Route(method: .post, path: "/api/v1/commands", body: ping, role: .operator),
        Route(method: .get, path: "/api/v1/commands/cmd-unknown", role: .viewer),
        Route(method: .get, path: "/api/v1/alerts", role: .viewer),
        Route(method: .post, path: "/api/v1/alerts/999/ack", role: .operator),
        Route(method: .get, path: "/api/v1/usage", role: .viewer),
        Route(method: .get, path: "/api/v1/audit", role: .admin),
        Route(method: .post, path: "/api/v1/rollouts", body: "{}", role: .admin),
        Route(method: .get, path: "/api/v1/rollouts", role: .viewer),
        Route(method: .get, path: "/api/v1/rollouts/r-unknown", role: .viewer),
        Route(method: .post, path: "/api/v1/rollouts/r-unknown/pause", role: .admin),
        Route(method: .post, path: "/api/v1/rollouts/r-unknown/resume", role: .admin),
        Route(method: .post, path: "/api/v1/rollouts/r-unknown/abort", role: .admin),
    ]

    /// What came back: status, headers and body, with the API's error fields when it has them.
    struct Answer: CustomStringConvertible {
        var status: HTTPResponse.Status
        var headers: HTTPFields
        var text: String

        var error: [String: Any]? {
            (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])?["error"] as? [String: Any]
        }
        var code: String? { error?["code"] as? String }
        var message: String { error?["message"] as? String ?? "" }
        var description: String { "\(status.code) \(text)" }
    }

    static func call(_ client: some TestClientProtocol, _ method: HTTPRequest.Method, _ path: String, body: String? = nil,
                     token: String? = nil, headers extra: HTTPFields = [:]) async throws -> Answer {
        var headers = extra
        if let token { headers[.authorization] = "Bearer \(token)" }
        if body != nil { headers[.contentType] = "application/json" }
        let response = try await client.execute(uri: path, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
        return Answer(status: response.status, headers: response.headers, text: String(buffer: response.body))
    }

    static func call(_ client: some TestClientProtocol, _ route: Route, token: String?, headers: HTTPFields = [:]) async throws -> Answer {
        try await call(client, route.method, route.path, body: route.body, token: token, headers: headers)
    }

    /// A console core with `tokens`, north and south announced, behind the
    /// console's whole router; `log` gets what the HTTP layer logs.
    static func withRouter(log: CapturedLog = CapturedLog(), extraRoutes: (Router<ConsoleRequestContext>) -> Void = { _ in },
                           _ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        try await ConsoleReplyAndScopeTests.withCore(tokens: tokens) { core in
            ConsoleReplyAndScopeTests.announce(north, to: core)
            ConsoleReplyAndScopeTests.announce(south, to: core)
            let router = HTTPAPI.router(core: core, dashboard: try Dashboard(core: core))
            extraRoutes(router)
            let app = Application(router: router, logger: Logger(label: "test.http") { _ in CapturedLog.Handler(log: log) })
            try await app.test(.router) { client in try await body(client) }
        }
    }

    // MARK: Authentication

    @Test("every protected API route answers 401 unauthorized without a valid bearer token, and a dashboard cookie is no token")
    func unauthenticatedIs401() async throws {
        try await Self.withRouter { client in
            let cookie = try await ConsoleReplyAndScopeTests.dashboardCookie(client, token: Self.admin)
            for route in Self.protectedRoutes {
                let none = try await Self.call(client, route, token: nil)
                #expect(none.status == .unauthorized && none.code == "unauthorized", "\(route) without a token: \(none)")
                #expect(none.message.contains("Authorization: Bearer"), "\(route): the 401 says what to send: \(none)")
                let wrong = try await Self.call(client, route, token: "not-a-token-of-this-console")
                #expect(wrong.status == .unauthorized && wrong.message == "the bearer token is not valid", "\(route) with a wrong token: \(wrong)")
                let basic = try await Self.call(client, route, token: nil, headers: [.authorization: "Basic YWRtaW46YWRtaW4="])
                #expect(basic.status == .unauthorized && basic.code == "unauthorized", "\(route) with Basic: \(basic)")
                // The API never takes the session cookie: no other web page can make a signed-in browser call it.
                let byCookie = try await Self.call(client, route, token: nil, headers: [.cookie: cookie])
                #expect(byCookie.status == .unauthorized && byCookie.code == "unauthorized", "\(route) with only a cookie: \(byCookie)")
            }
        }
    }

    @Test("routes that need no token answer as before: /healthz, /metrics, the sign-in page, static files; an unknown API route is 404 not_found; dashboard pages send to the sign-in page")
    func openRoutesStayOpen() async throws {
        try await Self.withRouter { client in
            let health = try await Self.call(client, .get, "/healthz")
            #expect([HTTPResponse.Status.ok, .serviceUnavailable].contains(health.status) && health.text.contains(#""status""#), "\(health)")
            let metrics = try await Self.call(client, .get, "/metrics")
            #expect(metrics.status == .ok && metrics.headers[.contentType]?.hasPrefix("text/plain") == true, "\(metrics.status)")
            let login = try await Self.call(client, .get, "/login")
            #expect(login.status == .ok && login.text.contains("<form"), "\(login.status)")
            for file in ["/static/app.css", "/static/app.js"] {
                #expect(try await Self.call(client, .get, file).status == .ok, "\(file)")
            }
            let unknown = try await Self.call(client, .get, "/api/v1/no-such-thing")
            #expect(unknown.status == .notFound && unknown.code == "not_found" && unknown.message == "no such route: GET /api/v1/no-such-thing", "\(unknown)")
            for page in ["/", "/devices", "/devices/clinic-north/massager-01", "/alerts", "/usage", "/rollouts"] {
                let answer = try await Self.call(client, .get, page)
                #expect(answer.status == .seeOther && answer.headers[.location] == "/login", "\(page): \(answer.status)")
            }
            let action = try await Self.call(client, .post, "/ui/alerts/1/ack")
            #expect(action.status == .seeOther && action.headers[.location] == "/login", "\(action.status)")
            let stream = try await Self.call(client, .get, "/events/overview")
            #expect(stream.status == .unauthorized && stream.text == "sign in first\n", "\(stream)")
        }
    }

    // MARK: Roles

    @Test("a viewer gets 403 forbidden on operator and admin actions and an operator on admin ones, each naming the role it needs; a role that is enough passes")
    func rolesAreDeclaredPerRoute() async throws {
        try await Self.withRouter { client in
            for (role, token) in [(Principal.Role.viewer, Self.viewer), (.operator, Self.operatorToken), (.admin, Self.admin)] {
                for route in Self.protectedRoutes {
                    let answer = try await Self.call(client, route, token: token)
                    if role < route.role {
                        #expect(answer.status == .forbidden && answer.code == "forbidden", "\(role.rawValue) \(route): \(answer)")
                        #expect(answer.message.contains("needs the \(route.role.rawValue) role") && answer.message.contains("is \(role.rawValue)"),
                                "\(role.rawValue) \(route): \(answer.message)")
                    } else {
                        #expect(answer.status != .forbidden && answer.status != .unauthorized, "\(role.rawValue) \(route): \(answer)")
                    }
                }
            }
        }
    }

    @Test("the dashboard refuses a viewer's operator action with 403, and lets an operator's through")
    func dashboardActionsNeedTheirRole() async throws {
        try await Self.withRouter { client in
            for (token, refused) in [(Self.viewer, true), (Self.operatorToken, false)] {
                let session = try await ConsoleReplyAndScopeTests.signInSession(client, token: token)
                let answer = try await Self.call(client, .post, "/ui/alerts/999/ack",
                                                 headers: [.cookie: session.cookie, .contentType: "application/x-www-form-urlencoded"],
                                                 bodyForm: "csrf=\(session.csrf)")
                if refused {
                    #expect(answer.status == .forbidden && answer.text.contains("this needs the operator role"), "\(answer)")
                } else {
                    // Past the role check: the core says there is no such alert.
                    #expect(answer.status == .notFound && answer.text == "alert 999 not found\n", "\(answer)")
                }
            }
        }
    }

    // MARK: Sites

    @Test("a site-limited token cannot reach another site: not its devices, usage, commands, forgetting, or the every-site audit log")
    func siteScopeHolds() async throws {
        try await Self.withRouter { client in
            let south = "/api/v1/devices/\(Self.south.site)/\(Self.south.device)"
            for token in [Self.northViewer, Self.northOperator, Self.northAdmin] {
                for path in [south, "/api/v1/devices?site=spa-south", "/api/v1/usage?site=spa-south"] {
                    let answer = try await Self.call(client, .get, path, token: token)
                    #expect(answer.status == .forbidden && answer.message.contains("may not see site \"spa-south\""), "\(path): \(answer)")
                }
                let own = try await Self.call(client, .get, "/api/v1/devices/\(Self.north.site)/\(Self.north.device)", token: token)
                #expect(own.status == .ok, "\(own)")
                let list = try await Self.call(client, .get, "/api/v1/devices", token: token)
                #expect(list.status == .ok && list.text.contains("clinic-north") && !list.text.contains("spa-south"), "\(list)")
            }
            for targets in [#"{"site": "spa-south"}"#, #"{"devices": ["spa-south/massager-01"]}"#] {
                let command = try await Self.call(client, .post, "/api/v1/commands", body: #"{"action": "ping", "targets": \#(targets)}"#, token: Self.northOperator)
                #expect(command.status == .forbidden && command.message.contains("may not act on site \"spa-south\""), "\(targets): \(command)")
            }
            let forget = try await Self.call(client, .post, "\(south)/forget", token: Self.northAdmin)
            #expect(forget.status == .forbidden && forget.message.contains("may not act on site \"spa-south\""), "\(forget)")
            let audit = try await Self.call(client, .get, "/api/v1/audit", token: Self.northAdmin)
            #expect(audit.status == .forbidden && audit.message.contains("covers every site"), "\(audit)")
            let stillThere = try await Self.call(client, .get, south, token: Self.admin)
            #expect(stillThere.status == .ok && !stillThere.text.contains("revoked_at"), "the refused forget changed nothing: \(stillThere)")

            // The dashboard's pages: the same scope.
            let cookie = try await ConsoleReplyAndScopeTests.dashboardCookie(client, token: Self.northViewer)
            let page = try await Self.call(client, .get, "/devices/spa-south/massager-01", headers: [.cookie: cookie])
            #expect(page.status == .forbidden && page.text.contains("may not see site"), "\(page)")
        }
    }

    // MARK: Errors

    @Test("a request body that does not fit is 400 invalid_request naming the field, or 413 too_large")
    func badBodiesAreTheCallersFault() async throws {
        try await Self.withRouter { client in
            let notJSON = try await Self.call(client, .post, "/api/v1/commands", body: "ping everything", token: Self.operatorToken)
            #expect(notJSON.status == .badRequest && notJSON.code == "invalid_request" && notJSON.message.hasPrefix("not valid JSON"), "\(notJSON)")
            let wrongField = try await Self.call(client, .post, "/api/v1/commands", body: #"{"action": "ping", "targets": {"devices": 7}}"#, token: Self.operatorToken)
            #expect(wrongField.status == .badRequest && wrongField.code == "invalid_request" && wrongField.message.contains("devices"), "\(wrongField)")
            let huge = String(repeating: " ", count: ConsoleConfiguration(databasePath: "/unused").maxRequestBodyBytes + 1)
            let tooLarge = try await Self.call(client, .post, "/api/v1/commands", body: huge, token: Self.operatorToken)
            #expect(tooLarge.status == .contentTooLarge && tooLarge.code == "too_large", "\(tooLarge.status) \(tooLarge.code ?? "")")
        }
    }

    /// What a store or a library might throw: text about the console's insides.
    struct InsideFault: Error, CustomStringConvertible {
        var description: String { "SQLITE_IOERR: disk I/O error in /var/lib/fleet-console/console.sqlite (host db-7.internal)" }
    }

    @Test("an unexpected error is a logged 500 internal with none of its text in the body, on the API and on the dashboard")
    func unexpectedErrorsAre500Internal() async throws {
        let log = CapturedLog()
        try await Self.withRouter(log: log, extraRoutes: { router in
            // Behind the same middleware as every route: authentication, access, error mapping.
            router.group("/api/v1", context: APIRequestContext.self).get("/faulty", .viewer) { _, _ -> Response in throw InsideFault() }
            router.group(context: DashboardRequestContext.self).get("/faulty") { _, _ -> Response in throw InsideFault() }
        }) { client in
            let api = try await Self.call(client, .get, "/api/v1/faulty", token: Self.viewer)
            #expect(api.status == .internalServerError && api.code == "internal", "\(api)")
            #expect(api.headers[.contentType]?.hasPrefix("application/json") == true)
            let cookie = try await ConsoleReplyAndScopeTests.dashboardCookie(client, token: Self.viewer)
            let page = try await Self.call(client, .get, "/faulty", headers: [.cookie: cookie])
            #expect(page.status == .internalServerError, "\(page)")
            for answer in [api, page] {
                for inside in ["SQLITE", "/var/lib", "console.sqlite", "db-7", "InsideFault"] {
                    #expect(!answer.text.contains(inside), "the body tells \(inside): \(answer)")
                }
                #expect(answer.text.contains("internal error"), "\(answer)")
            }
        }
        let errors = log.entries.withLock { $0 }.filter { $0.level == .error }
        #expect(errors.count == 2, "\(errors)")
        for entry in errors {
            #expect("\(entry.metadata["error"] ?? "")".contains("SQLITE_IOERR"), "the log has the error: \(entry)")
            #expect("\(entry.metadata["http.path"] ?? "")".hasSuffix("/faulty"), "\(entry)")
        }
    }
}

extension HTTPEdgeTests {
    static func call(_ client: some TestClientProtocol, _ method: HTTPRequest.Method, _ path: String, headers: HTTPFields, bodyForm: String) async throws -> Answer {
        let response = try await client.execute(uri: path, method: method, headers: headers, body: ByteBuffer(string: bodyForm))
        return Answer(status: response.status, headers: response.headers, text: String(buffer: response.body))
    }
}

/// Log entries, kept for a test to read.
final class CapturedLog: Sendable {
    struct Entry: Sendable, CustomStringConvertible {
        var level: Logger.Level
        var message: String
        var metadata: Logger.Metadata
        var description: String { "\(level) \(message) \(metadata)" }
    }

    let entries = Mutex<[Entry]>([])

    struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var metadataProvider: Logger.MetadataProvider?
        var logLevel: Logger.Level = .info

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let entry = Entry(level: event.level, message: "\(event.message)", metadata: metadata.merging(event.metadata ?? [:]) { $1 })
            log.entries.withLock { $0.append(entry) }
        }
    }
}
