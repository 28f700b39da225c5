import FleetProtocol
import Foundation
import HTTPTypes
import Hummingbird
import Mustache
import Synchronization

/// The web dashboard: server-rendered pages (Mustache), a little JavaScript
/// for live updates over Server-Sent Events, sign-in with an API token that
/// becomes an HttpOnly, SameSite=Strict session cookie, and CSRF tokens on
/// every state-changing form. Viewers see no controls, and the server refuses
/// their POSTs anyway.
final class Dashboard: Sendable {
    struct Session: Sendable {
        var principal: Principal
        var csrf: String
        var expires: Date
        /// The SHA-256 of the token signed in with: the session lasts only
        /// while that token is in force.
        var tokenDigest: [UInt8]
    }

    let core: ConsoleCore
    let library: MustacheLibrary
    private let sessions = Mutex<[String: Session]>([:])
    /// Live-update streams open per session (`dashboard.max_streams_per_session`).
    let streams: LiveStreams
    static let cookie = "fc_session"
    static let lifetime: TimeInterval = 8 * 3600

    init(core: ConsoleCore) throws {
        self.core = core
        streams = LiveStreams(limitPerSession: core.configuration.maxStreamsPerSession)
        var library = MustacheLibrary()
        for (name, text) in [("layout", DashboardTemplates.layout), ("login", DashboardTemplates.login), ("overview", DashboardTemplates.overview),
                             ("devices", DashboardTemplates.devices), ("device", DashboardTemplates.device), ("alerts", DashboardTemplates.alerts),
                             ("usage", DashboardTemplates.usage), ("rollouts", DashboardTemplates.rollouts)] {
            try library.register(text, named: name)
        }
        self.library = library
    }

    // MARK: Sessions

    static func randomToken() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
    }

    /// Whether `request` reached the browser over TLS, as far as the console
    /// may know (`secure_cookies`): always, never, or when a proxy said so
    /// with `X-Forwarded-Proto: https` — a header trusted only when
    /// configured, since anyone can send it to a console reached directly.
    static func isSecure(_ request: Request, _ mode: CookieSecurity) -> Bool {
        switch mode {
        case .off: return false
        case .always: return true
        case .forwardedProto:
            guard let name = HTTPField.Name("X-Forwarded-Proto"), let value = request.headers[name] else { return false }
            // A chain of proxies appends: the first value is what the browser used.
            return value.split(separator: ",").first?.trimmingCharacters(in: .whitespaces).lowercased() == "https"
        }
    }

    /// The session cookie's name: `__Host-fc_session` over TLS (the browser
    /// then insists on Secure, Path=/ and no Domain), else `fc_session`.
    static func sessionCookieName(secure: Bool) -> String { secure ? "__Host-" + cookie : cookie }

    /// `Set-Cookie` for the session `id` (empty and `Max-Age=0` to clear it).
    static func sessionCookie(_ id: String, secure: Bool, maxAge: Int) -> String {
        "\(sessionCookieName(secure: secure))=\(id); Path=/; HttpOnly; SameSite=Strict\(secure ? "; Secure" : ""); Max-Age=\(maxAge)"
    }

    func sessionID(_ request: Request) -> String? {
        Self.cookieValue(request, Self.sessionCookieName(secure: Self.isSecure(request, core.configuration.secureCookies)))
    }

    func session(_ request: Request) -> Session? {
        sessionID(request).flatMap(session(id:))
    }

    /// Session `id` while it is signed in: not signed out, not expired, and
    /// its token still in force, with the principal that token gives now.
    /// A session whose token was removed ends here. Every page and every
    /// live update asks.
    func session(id: String) -> Session? {
        let found = sessions.withLock { all -> Session? in
            guard let s = all[id] else { return nil }
            if s.expires < Date() { all[id] = nil; return nil }
            return s
        }
        guard var s = found else { return nil }
        guard let principal = core.principal(tokenDigest: s.tokenDigest) else {
            _ = sessions.withLock { $0.removeValue(forKey: id) }
            return nil
        }
        s.principal = principal
        return s
    }

    static func cookieValue(_ request: Request, _ name: String) -> String? {
        for header in request.headers[values: .cookie] {
            for part in header.split(separator: ";") {
                let kv = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1).map(String.init)
                if kv.count == 2, kv[0] == name { return kv[1] }
            }
        }
        return nil
    }

    // MARK: Responses

    static func securityHeaders(_ headers: inout HTTPFields) {
        headers[HTTPField.Name("Content-Security-Policy")!] = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        headers[HTTPField.Name("Referrer-Policy")!] = "same-origin"
        headers[.cacheControl] = "no-store"
    }

    func page(_ template: String, title: String, session: Session?, status: HTTPResponse.Status = .ok, flash: String? = nil, _ context: [String: Any]) -> Response {
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
        let raw = String(buffer: buffer).replacingOccurrences(of: "+", with: " ")
        var out: [String: String] = [:]
        for item in URLComponents(string: "?" + raw)?.queryItems ?? [] { out[item.name] = item.value ?? "" }
        return out
    }

    /// A state-changing request: a signed-in session, the form's CSRF token,
    /// and (when the browser sends one) an Origin of this host.
    enum Authorization {
        case success(Session)
        case failure(Response)
    }

    func authorize(_ request: Request, _ form: [String: String], role: Principal.Role) -> Authorization {
        guard let s = session(request) else { return .failure(Self.redirect("/login")) }
        if let origin = request.headers[.origin], !Self.sameOrigin(origin, authority: request.head.authority) {
            return .failure(Self.text(.forbidden, "cross-site request refused: origin \(origin) is not this console"))
        }
        guard let token = form["csrf"], constantTimeEqual(Array(token.utf8), Array(s.csrf.utf8)) else {
            return .failure(Self.text(.forbidden, "missing or wrong CSRF token: reload the page and try again"))
        }
        guard s.principal.role >= role else {
            return .failure(Self.text(.forbidden, "this needs the \(role.rawValue) role; \(s.principal.name) is \(s.principal.role.rawValue)"))
        }
        return .success(s)
    }

    /// Whether a browser's Origin names this console: the same host and port
    /// as the request's authority (the scheme may differ behind a TLS proxy).
    static func sameOrigin(_ origin: String, authority: String?) -> Bool {
        guard let authority, let url = URL(string: origin), let host = url.host(percentEncoded: false) else { return false }
        let originPort = url.port ?? (url.scheme == "https" ? 443 : 80)
        let parts = authority.split(separator: ":", omittingEmptySubsequences: false)
        let authorityHost = parts.count == 2 ? String(parts[0]) : authority
        let authorityPort = parts.count == 2 ? Int(parts[1]) : (url.scheme == "https" ? 443 : 80)
        return host.lowercased() == authorityHost.lowercased() && originPort == authorityPort
    }

    static func when(_ d: Date?) -> String {
        guard let d else { return "" }
        return RFC3339.string(from: d).replacingOccurrences(of: "T", with: " ").prefix(19) + " UTC"
    }

    // MARK: Routes

    func addRoutes(to router: Router<BasicRequestContext>) {
        let limit = core.configuration.maxRequestBodyBytes
        let core = self.core

        router.get("/static/app.css") { _, _ -> Response in
            var h = HTTPFields(); h[.contentType] = "text/css; charset=utf-8"; h[.cacheControl] = "max-age=300"
            return Response(status: .ok, headers: h, body: ResponseBody(byteBuffer: ByteBuffer(string: DashboardTemplates.css)))
        }
        router.get("/static/app.js") { _, _ -> Response in
            var h = HTTPFields(); h[.contentType] = "text/javascript; charset=utf-8"; h[.cacheControl] = "max-age=300"
            return Response(status: .ok, headers: h, body: ResponseBody(byteBuffer: ByteBuffer(string: DashboardTemplates.js)))
        }

        router.get("/login") { request, _ in
            self.session(request) != nil ? Self.redirect("/") : self.page("login", title: "Sign in", session: nil, [:])
        }
        router.post("/login") { request, _ -> Response in
            let form = await Self.form(request, limit: limit)
            do {
                let token = (form["token"] ?? "").trimmingCharacters(in: .whitespaces)
                let principal = try core.authenticate(authorization: "Bearer " + token)
                let id = Self.randomToken()
                let session = Session(principal: principal, csrf: Self.randomToken(), expires: Date().addingTimeInterval(Self.lifetime), tokenDigest: TokenEntry.hash(token))
                self.sessions.withLock { $0[id] = session }
                await core.audit(principal, "dashboard.sign_in", targets: "-", outcome: "ok")
                let secure = Self.isSecure(request, core.configuration.secureCookies)
                return Self.redirect("/", cookie: Self.sessionCookie(id, secure: secure, maxAge: Int(Self.lifetime)))
            } catch {
                return self.page("login", title: "Sign in", session: nil, status: .unauthorized, ["error": "That token is not valid."])
            }
        }
        router.post("/logout") { request, _ -> Response in
            let form = await Self.form(request, limit: limit)
            if case .success = self.authorize(request, form, role: .viewer), let id = self.sessionID(request) {
                _ = self.sessions.withLock { $0.removeValue(forKey: id) }
            }
            return Self.redirect("/login", cookie: Self.sessionCookie("", secure: Self.isSecure(request, core.configuration.secureCookies), maxAge: 0))
        }

        router.get("/") { request, _ -> Response in
            guard let s = self.session(request) else { return Self.redirect("/login") }
            // Each site's start form offers the programs its own devices run
            // (never another site's: issue 20, item 6).
            let programs = core.programsBySite(for: s.principal)
            let sites = await core.sites(for: s.principal).map { site -> [String: Any] in
                var d = (try? JSONValue(encoding: site)).map(Self.plain) as? [String: Any] ?? [:]
                d["utilisationText"] = "\(Int((site.utilisation * 100).rounded()))%"
                d["programs"] = programs[site.site] ?? []
                d["canOperate"] = s.principal.role >= .operator
                d["csrf"] = s.csrf
                return d
            }
            return self.page("overview", title: "Overview", session: s, flash: Self.cookieFlash(request), ["sites": sites])
        }

        router.get("/devices") { request, _ -> Response in
            guard let s = self.session(request) else { return Self.redirect("/login") }
            let devices = ((try? core.devices(for: s.principal)) ?? []).map { d -> [String: Any] in
                ["site": d.site, "device": d.device, "state": d.state.rawValue, "health": d.health.rawValue,
                 "program": d.session?.program ?? "", "config": "\(d.config.reported.map(String.init) ?? "–") / \(d.config.desired.map(String.init) ?? "–")"]
            }
            let siteIDs = await core.sites(for: s.principal).map(\.site)
            return self.page("devices", title: "Devices", session: s, ["devices": devices, "siteIDs": siteIDs])
        }

        router.get("/devices/:site/:device") { request, context -> Response in
            guard let s = self.session(request) else { return Self.redirect("/login") }
            let site = context.parameters.get("site") ?? "", device = context.parameters.get("device") ?? ""
            let detail: DeviceDetail
            do { detail = try await core.device(site: site, device: device, for: s.principal) } catch let error as ConsoleError {
                return Self.text(error.status, error.message)
            } catch {
                return Self.text(.internalServerError, "\(error)")
            }
            let sum = detail.summary
            var ctx: [String: Any] = [
                "site": site, "device": device, "state": sum.state.rawValue, "health": sum.health.rawValue,
                "agentVersion": sum.agentVersion ?? "?", "epoch": sum.epoch.map(String.init) ?? "?", "programs": detail.programs,
                "live": Self.live(detail.telemetry, at: detail.telemetryAt),
                "sessions": detail.recentSessions.map { ["session_id": $0.sessionID, "program": $0.program ?? "", "started": Self.when($0.startedAt), "outcome": $0.outcome, "reason": $0.reason ?? ""] },
                "alerts": detail.alerts.map { a -> [String: Any] in ["type": a.type, "severity": a.severity.rawValue, "message": a.message, "raised": Self.when(a.raisedAt), "cleared": a.clearedAt.map(Self.when) ?? false] },
                "desired": detail.desiredConfig.map { "version \($0.version): " + Self.json($0.config) } ?? "none",
                "reported": detail.reportedConfig.map { "version \($0.version) \($0.state.rawValue)" + ($0.error.map { ": \($0)" } ?? "") } ?? "none",
            ]
            ctx["csrf"] = s.csrf
            return self.page("device", title: "\(site)/\(device)", session: s, flash: Self.cookieFlash(request), ctx)
        }

        router.get("/alerts") { request, _ -> Response in
            guard let s = self.session(request) else { return Self.redirect("/login") }
            let alerts = ((try? await core.alerts(for: s.principal, activeOnly: true)) ?? []).map { a -> [String: Any] in
                ["id": "\(a.id)", "severity": a.severity.rawValue, "site": a.site, "device": a.device ?? "all", "type": a.type, "message": a.message,
                 "raised": Self.when(a.raisedAt), "acknowledged": a.acknowledgedBy.map { "\($0), \(Self.when(a.acknowledgedAt))" } ?? "",
                 "canAck": s.principal.role >= .operator && a.acknowledgedBy == nil, "csrf": s.csrf]
            }
            return self.page("alerts", title: "Alerts", session: s, flash: Self.cookieFlash(request), ["alerts": alerts])
        }

        router.get("/usage") { request, _ -> Response in
            guard let s = self.session(request) else { return Self.redirect("/login") }
            let report = (try? core.usage(for: s.principal)) ?? UsageReport(days: [], totals: [:])
            let sites = report.totals.keys.sorted().map { site -> [String: Any] in
                let total = report.totals[site]!
                func minutes(_ seconds: [String: UInt64]) -> [(String, Double)] { seconds.map { ($0.key, Double($0.value) / 60) }.sorted { $0.1 > $1.1 } }
                let charts = [
                    UsageCharts.bars(title: "Minutes by zone", minutes(total.seconds.byZone)),
                    UsageCharts.bars(title: "Minutes by point", minutes(total.seconds.byPoint)),
                    UsageCharts.bars(title: "Minutes by program", minutes(total.seconds.byProgram)),
                    UsageCharts.bars(title: "Sessions by outcome", [("completed", Double(total.sessions.completed))] + total.sessions.aborted.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { ("aborted: \($0.key)", Double($0.value)) }),
                    UsageCharts.days(title: "Session minutes per day", report.days.filter { $0.site == site }.map { ($0.day, $0.minutes["program"]?.values.reduce(0, +) ?? 0) }),
                ].joined()
                return ["site": site, "started": "\(total.sessions.started)", "completed": "\(total.sessions.completed)", "aborted": "\(total.sessions.abortedTotal)", "charts": charts]
            }
            return self.page("usage", title: "Usage", session: s, ["sites": sites])
        }

        router.get("/rollouts") { request, _ -> Response in
            guard let s = self.session(request) else { return Self.redirect("/login") }
            let list = ((try? await core.rolloutList(for: s.principal)) ?? []).map { r -> [String: Any] in
                ["id": r.id, "name": r.name, "state": r.state.rawValue, "reason": r.reason ?? false,
                 "waves": r.waves.map { "\($0.index): \($0.size) \($0.state)" }.joined(separator: ", "),
                 "counts": r.counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "),
                 "devices": r.devices.map { ["wave": "\($0.wave)", "site": $0.site, "device": $0.device, "state": $0.state.rawValue, "version": $0.version.map(String.init) ?? "", "error": $0.error ?? ""] },
                 "canAdmin": s.principal.role >= .admin && !r.partial, "partial": r.partial, "csrf": s.csrf]
            }
            return self.page("rollouts", title: "Rollouts", session: s, flash: Self.cookieFlash(request), ["rollouts": list])
        }

        // Actions
        router.post("/ui/devices/:site/:device/:action") { request, context -> Response in
            let form = await Self.form(request, limit: limit)
            let s: Session
            switch self.authorize(request, form, role: .operator) { case .success(let x): s = x; case .failure(let r): return r }
            let site = context.parameters.get("site") ?? "", device = context.parameters.get("device") ?? ""
            let action = context.parameters.get("action") ?? ""
            let back = "/devices/\(site)/\(device)"
            let submission: CommandSubmission
            switch action {
            case "start": submission = CommandSubmission(action: "start_session", params: .object(["program": .string(form["program"] ?? "")]), targets: .init(devices: ["\(site)/\(device)"]))
            case "stop": submission = CommandSubmission(action: "stop_session", targets: .init(devices: ["\(site)/\(device)"]))
            case "clear-fault": submission = CommandSubmission(action: "clear_fault", targets: .init(devices: ["\(site)/\(device)"]))
            default: return Self.text(.notFound, "unknown action")
            }
            return await self.run(submission, by: s.principal, back: back)
        }

        router.post("/ui/sites/:site/start") { request, context -> Response in
            let form = await Self.form(request, limit: limit)
            let s: Session
            switch self.authorize(request, form, role: .operator) { case .success(let x): s = x; case .failure(let r): return r }
            let site = context.parameters.get("site") ?? ""
            let submission = CommandSubmission(action: "start_session", params: .object(["program": .string(form["program"] ?? "")]), targets: .init(site: site, idleOnly: true))
            return await self.run(submission, by: s.principal, back: "/")
        }

        router.post("/ui/alerts/:id/ack") { request, context -> Response in
            let form = await Self.form(request, limit: limit)
            let s: Session
            switch self.authorize(request, form, role: .operator) { case .success(let x): s = x; case .failure(let r): return r }
            guard let id = context.parameters.get("id").flatMap(Int64.init) else { return Self.text(.badRequest, "alert id: expected a number") }
            do { _ = try await core.acknowledgeAlert(id: id, by: s.principal) } catch let error as ConsoleError {
                return Self.text(error.status, error.message)
            } catch {
                return Self.text(.internalServerError, "\(error)")
            }
            return Self.redirect("/alerts", cookie: Self.flashCookie("Alert \(id) acknowledged."))
        }

        router.post("/ui/rollouts/:id/:action") { request, context -> Response in
            let form = await Self.form(request, limit: limit)
            let s: Session
            switch self.authorize(request, form, role: .admin) { case .success(let x): s = x; case .failure(let r): return r }
            let id = context.parameters.get("id") ?? "", action = context.parameters.get("action") ?? ""
            do { _ = try await core.controlRollout(id: id, action: action, by: s.principal) } catch let error as ConsoleError {
                return Self.redirect("/rollouts", cookie: Self.flashCookie(error.message))
            } catch {
                return Self.redirect("/rollouts", cookie: Self.flashCookie("\(error)"))
            }
            return Self.redirect("/rollouts", cookie: Self.flashCookie("Rollout \(id): \(action) done."))
        }

        // Live updates
        router.get("/events/devices/:site/:device") { request, context -> Response in
            guard let id = self.sessionID(request), let s = self.session(id: id) else { return Self.text(.unauthorized, "sign in first") }
            let site = context.parameters.get("site") ?? "", device = context.parameters.get("device") ?? ""
            guard (try? await core.device(site: site, device: device, for: s.principal)) != nil else { return Self.text(.notFound, "no such device") }
            return self.stream(session: id) { principal in
                // The device's site may have left the token's list: the stream ends.
                guard let d = try? await core.device(site: site, device: device, for: principal) else { return nil }
                return Self.json(Self.live(d.telemetry, at: d.telemetryAt))
            }
        }
        router.get("/events/overview") { request, _ -> Response in
            guard let id = self.sessionID(request), self.session(id: id) != nil else { return Self.text(.unauthorized, "sign in first") }
            return self.stream(session: id) { principal in
                let sites = await core.sites(for: principal).map { site -> [String: Any] in
                    ["site": site.site, "counts": ["devices": site.devices, "online": site.online, "in_session": site.inSession, "idle": site.idle,
                                                   "offline": site.offline, "faulted": site.faulted, "alerts": site.activeAlerts,
                                                   "sessions_today": site.sessionsToday, "utilisation": "\(Int((site.utilisation * 100).rounded()))%"] as [String: Any]]
                }
                return Self.json(sites)
            }
        }
    }

    /// Submits a command for the dashboard and redirects back with its outcome.
    func run(_ submission: CommandSubmission, by principal: Principal, back: String) async -> Response {
        do {
            var record = try await core.submit(submission, by: principal)
            // Give the devices a moment to answer so the flash can say how it went.
            let deadline = Date().addingTimeInterval(3)
            while !record.isFinished, Date() < deadline {
                try? await Task.sleep(for: .milliseconds(100))
                record = (try? await core.command(id: record.id, for: principal)) ?? record
            }
            let counts = Dictionary(grouping: record.results, by: \.state.rawValue).map { "\($0.value.count) \($0.key)" }.sorted().joined(separator: ", ")
            let errors = record.results.compactMap(\.error?.message).prefix(2).joined(separator: "; ")
            return Self.redirect(back, cookie: Self.flashCookie("\(submission.action): \(counts)" + (errors.isEmpty ? "" : " — \(errors)")))
        } catch {
            return Self.redirect(back, cookie: Self.flashCookie(error.message))
        }
    }

    /// A one-shot message for the next page (a cookie, cleared when shown).
    static func flashCookie(_ text: String) -> String {
        let encoded = Data(text.prefix(300).utf8).base64EncodedString().replacingOccurrences(of: "=", with: "")
        return "fc_flash=\(encoded); Path=/; HttpOnly; SameSite=Strict; Max-Age=30"
    }

    static func cookieFlash(_ request: Request) -> String? {
        guard var v = cookieValue(request, "fc_flash"), !v.isEmpty else { return nil }
        while v.count % 4 != 0 { v += "=" }
        return Data(base64Encoded: v).flatMap { String(data: $0, encoding: .utf8) }
    }

    /// Server-Sent Events for session `id`: the value of `snapshot` (given
    /// the session's principal as its token says now) whenever it changes,
    /// checked every second, for at most 10 minutes (the browser reconnects).
    ///
    /// Every second the session is checked again: once it is signed out,
    /// expired or its token removed, the stream sends `event: signed_out` and
    /// ends (so does it when `snapshot` says nil: nothing left to show). A
    /// second with nothing new sends an SSE comment, so a client that went
    /// away is noticed (the write fails) and its slot freed within seconds.
    /// A session holds at most `dashboard.max_streams_per_session` streams;
    /// one more is refused with 429 `too_many_streams` (EventSource does not
    /// retry a refused stream, where closing the oldest would have the
    /// browser reopen it and evict another, over and over).
    func stream(session id: String, _ snapshot: @escaping @Sendable (Principal) async -> String?) -> Response {
        guard let slot = streams.acquire(session: id) else {
            let limit = streams.limitPerSession
            let body = Self.json([
                "error": ["code": "too_many_streams",
                          "message": "this session already has \(limit) live-update streams open (dashboard.max_streams_per_session: \(limit)); close a dashboard tab, or wait for one to end, then reload"],
            ] as [String: Any])
            var headers = HTTPFields()
            headers[.contentType] = "application/json; charset=utf-8"
            Self.securityHeaders(&headers)
            return Response(status: .tooManyRequests, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: ResponseBody { [self] writer in
            defer { slot.release() }
            var last: String?
            let end = ContinuousClock.now + .seconds(600)
            while ContinuousClock.now < end, !Task.isCancelled {
                guard let session = self.session(id: id) else {
                    try await writer.write(ByteBuffer(string: "event: signed_out\ndata: {}\n\n"))
                    break
                }
                guard let now = await snapshot(session.principal) else { break }
                if now != last {
                    try await writer.write(ByteBuffer(string: "data: \(now)\n\n"))
                    last = now
                } else {
                    try await writer.write(ByteBuffer(string: ":\n\n"))
                }
                try await Task.sleep(for: .seconds(1))
            }
            try await writer.finish(nil)
        })
    }

    static func live(_ t: Telemetry?, at: Date?) -> [String: String] {
        guard let t else { return ["state": "no telemetry yet", "step": "", "target": "", "technique": "", "intensity": "", "pressure": "", "motor_temp": "", "breathing": "", "faults": "", "lockout": "", "updated": ""] }
        let step = t.step
        return [
            "state": t.sessionState.rawValue,
            "step": step.map { "\($0.index + 1)" } ?? "–",
            "target": step.map { $0.point.map { "\($0.uppercased()) (\(step!.zone))" } ?? $0.zone } ?? "–",
            "technique": step?.technique ?? "–",
            "intensity": step.map { "\($0.intensity)" } ?? "–",
            "pressure": t.pressureMMHg.isEmpty ? "–" : t.pressureMMHg.sorted { $0.key < $1.key }.map { "\($0.key) \(Int($0.value.rounded())) mmHg" }.joined(separator: ", "),
            "motor_temp": String(format: "%.1f °C", t.motorTempC),
            "breathing": t.breathingBPM.map { "\($0) breaths/min" } ?? "–",
            "faults": t.faults.isEmpty ? "none" : t.faults.joined(separator: ", ")
                + ((t.acknowledgeable ?? []).isEmpty ? "" : " (healthy again, waiting for acknowledgement: \(t.acknowledgeable!.joined(separator: ", ")))"),
            "lockout": t.lockout.map { l in "after a pain signal at \(l.point.map { "\($0.uppercased()) (\(l.zone))" } ?? l.zone): remote starts refused for \(Int(l.remainingSeconds.rounded(.up))) s more" } ?? "none",
            "updated": when(at),
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

/// Inline SVG bar charts drawn by the server.
enum UsageCharts {
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func bars(title: String, _ items: [(String, Double)]) -> String {
        guard !items.isEmpty else { return "" }
        let width = 480.0, rowH = 22.0, label = 170.0
        let maxValue = max(items.map(\.1).max() ?? 1, 0.001)
        var svg = "<figure><figcaption>\(escape(title))</figcaption><svg role=\"img\" aria-label=\"\(escape(title))\" viewBox=\"0 0 \(Int(width)) \(Int(Double(items.count) * rowH + 4))\" width=\"100%\">"
        for (i, item) in items.enumerated() {
            let y = Double(i) * rowH
            let w = (width - label - 60) * item.1 / maxValue
            svg += "<text x=\"0\" y=\"\(y + 15)\">\(escape(item.0))</text>"
            svg += "<rect x=\"\(label)\" y=\"\(y + 3)\" width=\"\(String(format: "%.1f", max(w, 1)))\" height=\"\(rowH - 6)\" fill=\"#0a58ca\"><title>\(escape(item.0)): \(String(format: "%.1f", item.1))</title></rect>"
            svg += "<text x=\"\(String(format: "%.1f", label + max(w, 1) + 6))\" y=\"\(y + 15)\">\(String(format: item.1 < 10 ? "%.1f" : "%.0f", item.1))</text>"
        }
        return svg + "</svg></figure>"
    }

    static func days(title: String, _ items: [(String, Double)]) -> String { bars(title: title, items) }
}
