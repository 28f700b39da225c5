import FleetProtocol
import Foundation
import HTTPTypes
import Hummingbird
import Mustache

/// The web dashboard: server-rendered pages (Mustache), a little JavaScript
/// for live updates over Server-Sent Events, sign-in with an API token that
/// becomes an HttpOnly, SameSite=Strict session cookie (DashboardSessions),
/// and CSRF tokens on every state-changing form. Viewers see no controls,
/// and the server refuses their POSTs anyway (DashboardActionCheck).
///
/// Its routes: Dashboard+SignIn.swift (static files, signing in and out),
/// Dashboard+Pages.swift (the pages),
/// Dashboard+Actions.swift (forms that change something),
/// Dashboard+LiveUpdates.swift (Server-Sent Events).
final class Dashboard: Sendable {
    let core: ConsoleCore
    let library: MustacheLibrary
    let sessions: DashboardSessions
    /// Live-update streams open per session (`dashboard.max_streams_per_session`).
    let streams: LiveStreams

    init(core: ConsoleCore) throws {
        self.core = core
        sessions = DashboardSessions(core: core)
        streams = LiveStreams(limitPerSession: core.configuration.maxStreamsPerSession)
        var library = MustacheLibrary()
        for (name, text) in [("layout", DashboardTemplates.layout), ("login", DashboardTemplates.login), ("overview", DashboardTemplates.overview),
                             ("devices", DashboardTemplates.devices), ("device", DashboardTemplates.device), ("alerts", DashboardTemplates.alerts),
                             ("usage", DashboardTemplates.usage), ("rollouts", DashboardTemplates.rollouts),
                             ("rolloutNew", DashboardTemplates.rolloutNew), ("rollout", DashboardTemplates.rollout)] {
            try library.register(text, named: name)
        }
        self.library = library
    }

    /// The dashboard's routes, on a router whose `Authenticator` knows `sessions`.
    func addRoutes(to router: Router<ConsoleRequestContext>) {
        addOpenRoutes(to: router)
        addPages(to: router.group(context: DashboardRequestContext.self))
        addActions(to: router.group(context: DashboardRequestContext.self))
        addLiveUpdates(to: router.group(context: DashboardStreamContext.self))
        addRolloutPages(pages: router.group(context: DashboardRequestContext.self), actions: router.group(context: DashboardRequestContext.self),
                        events: router.group(context: DashboardStreamContext.self))
    }

    // MARK: Responses

    static func securityHeaders(_ headers: inout HTTPFields) {
        headers[HTTPField.Name("Content-Security-Policy")!] = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        headers[HTTPField.Name("Referrer-Policy")!] = "same-origin"
        headers[.cacheControl] = "no-store"
    }

    func page(_ template: String, title: String, session: DashboardSessions.SignedIn?, status: HTTPResponse.Status = .ok, flash: String? = nil, _ context: [String: Any]) -> Response {
        var ctx = context
        ctx["csrf"] = session?.csrf ?? ""
        ctx["canOperate"] = (session?.principal.role ?? .viewer) >= .operator
        let body = library.render(ctx, withTemplate: template) ?? ""
        var layout: [String: Any] = ["title": title, "page": template, "body": body, "signedIn": session != nil]
        if let s = session {
            layout["whoami"] = s.principal.name
            layout["role"] = s.principal.role.rawValue
            layout["csrf"] = s.csrf
        }
        layout["is" + template.prefix(1).uppercased() + template.dropFirst()] = true
        if let flash { layout["flash"] = flash }
        var headers = HTTPFields()
        headers[.contentType] = "text/html; charset=utf-8"
        Self.securityHeaders(&headers)
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: library.render(layout, withTemplate: "layout") ?? "")))
    }

    static func redirect(_ location: String, cookie: String? = nil) -> Response {
        var headers = HTTPFields()
        headers[.location] = location
        if let cookie { headers[.setCookie] = cookie }
        securityHeaders(&headers)
        return Response(status: .seeOther, headers: headers)
    }

    static func text(_ status: HTTPResponse.Status, _ message: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; charset=utf-8"
        securityHeaders(&headers)
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: message + "\n")))
    }

    static func form(_ request: Request, limit: Int) async -> [String: String] {
        var request = request
        guard let buffer = try? await request.collectBody(upTo: limit) else { return [:] }
        // application/x-www-form-urlencoded: `+` is a space, then %XX.
        // (Read by hand: URLComponents leaves a value with a space
        // undecoded, which broke multi-line and comma-separated fields.)
        func decode(_ s: Substring) -> String {
            let spaced = s.replacingOccurrences(of: "+", with: " ")
            return spaced.removingPercentEncoding ?? spaced
        }
        var out: [String: String] = [:]
        for pair in String(buffer: buffer).split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            out[decode(parts[0])] = parts.count > 1 ? decode(parts[1]) : ""
        }
        return out
    }

    /// `d` in the site's time zone, the zone shown (DashboardFormat).
    static func when(_ d: Date?, zone: TimeZone) -> String { DashboardFormat.time(d, in: zone) }

    static func live(_ t: Telemetry?, at: Date?, zone: TimeZone) -> [String: String] {
        guard let t else { return ["state": "no telemetry yet", "program": "", "step": "", "step_left": "", "elapsed": "", "target": "", "technique": "", "intensity": "", "pressure": "", "motor_temp": "", "breathing": "", "faults": "", "lockout": "", "updated": ""] }
        let step = t.step
        return [
            "state": t.sessionState.rawValue,
            "program": t.program.map { String($0.prefix(64)) } ?? "–",
            "step": step.map { "\($0.index + 1)" } ?? "–",
            "step_left": step?.remainingSeconds.map(DashboardFormat.duration) ?? "–",
            "elapsed": t.elapsedSeconds.map(DashboardFormat.duration) ?? "–",
            "target": step.map { $0.point.map { "\($0.uppercased()) (\(step!.zone))" } ?? $0.zone } ?? "–",
            "technique": step?.technique ?? "–",
            "intensity": step.map { "\($0.intensity)" } ?? "–",
            "pressure": t.pressureMMHg.isEmpty ? "–" : t.pressureMMHg.sorted { $0.key < $1.key }.map { "\($0.key) \(Int($0.value.rounded())) mmHg" }.joined(separator: ", "),
            "motor_temp": String(format: "%.1f °C", t.motorTempC),
            "breathing": t.breathingBPM.map { "\($0) breaths/min" } ?? "–",
            "faults": t.faults.isEmpty ? "none" : t.faults.joined(separator: ", ")
                + ((t.acknowledgeable ?? []).isEmpty ? "" : " (healthy again, waiting for acknowledgement: \(t.acknowledgeable!.joined(separator: ", ")))"),
            "lockout": t.lockout.map { l in "after a pain signal at \(l.point.map { "\($0.uppercased()) (\(l.zone))" } ?? l.zone): remote starts refused for \(DashboardFormat.duration(l.remainingSeconds.rounded(.up))) more" } ?? "none",
            "updated": when(at, zone: zone),
        ]
    }

    static func json(_ value: Any) -> String {
        (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    static func json(_ value: some Encodable) -> String {
        (try? FleetJSON.encode(value, sortedKeys: true)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// JSONValue → plain Foundation values for Mustache.
    static func plain(_ v: JSONValue) -> Any {
        switch v {
        case .null: return false
        case .bool(let b): return b
        case .integer(let i): return Int(i)
        case .number(let n): return n == n.rounded() && abs(n) < 1e15 ? Int(n) as Any : n
        case .string(let s): return s
        case .array(let a): return a.map(plain)
        case .object(let o): return o.mapValues(plain)
        }
    }
}
