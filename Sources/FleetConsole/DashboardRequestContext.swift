import Foundation
import HTTPTypes
import Hummingbird

/// The context of the dashboard's pages and actions: a signed-in session.
/// Made as a route is entered; without a session the browser is sent to
/// the sign-in page instead.
struct DashboardRequestContext: ChildRequestContext {
    var coreContext: CoreRequestContextStorage
    let signedIn: DashboardSessions.SignedIn
    /// The form an action posted, once `DashboardActionCheck` accepted it.
    var form: [String: String] = [:]

    var principal: Principal { signedIn.principal }

    init(context: ConsoleRequestContext) throws {
        guard let signedIn = context.session else { throw DashboardRefusal.signInFirst }
        self.signedIn = signedIn
        coreContext = context.coreContext
    }
}

/// The context of the dashboard's live updates: a signed-in session, or 401
/// (an EventSource cannot follow a redirect to a page).
struct DashboardStreamContext: ChildRequestContext {
    var coreContext: CoreRequestContextStorage
    let signedIn: DashboardSessions.SignedIn

    init(context: ConsoleRequestContext) throws {
        guard let signedIn = context.session else { throw DashboardRefusal.streamNeedsSignIn }
        self.signedIn = signedIn
        coreContext = context.coreContext
    }
}

/// Why the dashboard turned a request away, answered as a browser needs it.
enum DashboardRefusal: HTTPResponseError {
    /// No signed-in session: to the sign-in page.
    case signInFirst
    /// No signed-in session for a live update: 401.
    case streamNeedsSignIn
    /// Not from this console's own page, or the role is not enough.
    case forbidden(String)

    var status: HTTPResponse.Status {
        switch self {
        case .signInFirst: .seeOther
        case .streamNeedsSignIn: .unauthorized
        case .forbidden: .forbidden
        }
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        switch self {
        case .signInFirst: Dashboard.redirect("/login")
        case .streamNeedsSignIn: Dashboard.text(.unauthorized, "sign in first")
        case .forbidden(let message): Dashboard.text(.forbidden, message)
        }
    }
}

/// Accepts a dashboard action only from this console's own page — the
/// form's CSRF token, and an Origin of this host when the browser sends
/// one — and only for a session of at least `role`.
struct DashboardActionCheck: RouterMiddleware {
    typealias Context = DashboardRequestContext

    let role: Principal.Role
    /// The most a form may hold (`max_request_body_bytes`).
    let limit: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        context.form = await Dashboard.form(request, limit: limit)
        try Self.check(request, form: context.form, signedIn: context.signedIn, role: role)
        return try await next(request, context)
    }

    static func check(_ request: Request, form: [String: String], signedIn: DashboardSessions.SignedIn, role: Principal.Role) throws(DashboardRefusal) {
        if let origin = request.headers[.origin], !sameOrigin(origin, authority: request.head.authority) {
            throw .forbidden("cross-site request refused: origin \(origin) is not this console")
        }
        guard let token = form["csrf"], constantTimeEqual(Array(token.utf8), Array(signedIn.csrf.utf8)) else {
            throw .forbidden("missing or wrong CSRF token: reload the page and try again")
        }
        guard signedIn.principal.role >= role else {
            throw .forbidden("this needs the \(role.rawValue) role; \(signedIn.principal.name) is \(signedIn.principal.role.rawValue)")
        }
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
}

extension RouterMethods where Context == DashboardRequestContext {
    /// POST `path`, a dashboard action for sessions of at least `role`
    /// (checked by `DashboardActionCheck` before `handler` runs).
    @discardableResult
    func action(_ path: RouterPath, requires role: Principal.Role, formLimit: Int,
                use handler: @escaping @Sendable (Request, Context) async throws -> Response) -> Self {
        group().add(middleware: DashboardActionCheck(role: role, limit: formLimit)).post(path, use: handler)
        return self
    }
}
