import HTTPTypes
import Hummingbird

/// What an API route asks of its caller beyond a valid token: the least
/// role, and which sites the token must reach. Declared with the route
/// (`api.post("/commands", .operator("sending commands")) { … }`) and checked
/// by `AccessCheck` before its handler runs; docs/api.md lists the same.
///
/// The core checks again what it is asked to do (which sites a command's
/// targets or a rollout's devices are at is data only it knows); the
/// messages here are the core's, so a refusal reads the same either way.
struct Access: Sendable {
    /// Which sites a route touches, for site-limited tokens.
    enum Sites: Sendable {
        /// Whatever the request names; the core scopes the answer.
        case asked
        /// The site in this path parameter, read.
        case seeing(parameter: String)
        /// The site in this path parameter, acted on.
        case actingOn(parameter: String)
        /// Every site at once: a token limited to some sites may not.
        case every
    }

    var role: Principal.Role
    /// What the route does, as refusals name it ("sending commands needs …").
    var purpose: String
    var sites: Sites = .asked

    /// Any valid token.
    static let viewer = Access(role: .viewer, purpose: "reading")
    static func `operator`(_ purpose: String) -> Access { Access(role: .operator, purpose: purpose) }
    static func admin(_ purpose: String) -> Access { Access(role: .admin, purpose: purpose) }

    func seeing(site parameter: String) -> Access { with(.seeing(parameter: parameter)) }
    func actingOn(site parameter: String) -> Access { with(.actingOn(parameter: parameter)) }
    func everySite() -> Access { with(.every) }

    private func with(_ sites: Sites) -> Access {
        var copy = self
        copy.sites = sites
        return copy
    }

    /// Throws 403 `forbidden` naming what `principal` lacks.
    func check(_ principal: Principal, parameters: Parameters) throws(ConsoleError) {
        guard principal.role >= role else {
            throw .forbidden("\(purpose) needs the \(role.rawValue) role; token '\(principal.name)' is \(principal.role.rawValue)")
        }
        switch sites {
        case .asked:
            break
        case .seeing(let parameter):
            let site = parameters.get(parameter) ?? ""
            guard principal.canSee(site: site) else { throw .forbidden("token '\(principal.name)' may not see site \"\(site)\"") }
        case .actingOn(let parameter):
            let site = parameters.get(parameter) ?? ""
            guard principal.canSee(site: site) else { throw .forbidden("token '\(principal.name)' may not act on site \"\(site)\"") }
        case .every:
            if let limited = principal.sites {
                throw .forbidden("\(purpose) covers every site; token '\(principal.name)' is limited to \(limited.sorted().joined(separator: ", "))")
            }
        }
    }
}

/// Refuses a request whose caller lacks a route's `Access`.
struct AccessCheck: RouterMiddleware {
    typealias Context = APIRequestContext

    let access: Access

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        try access.check(context.principal, parameters: context.parameters)
        return try await next(request, context)
    }
}

extension RouterMethods where Context == APIRequestContext {
    /// GET `path` for callers with `access`.
    @discardableResult
    func get(_ path: RouterPath, _ access: Access, use handler: @escaping @Sendable (Request, Context) async throws -> some ResponseGenerator) -> Self {
        on(path, method: .get, access, use: handler)
    }

    /// POST `path` for callers with `access`.
    @discardableResult
    func post(_ path: RouterPath, _ access: Access, use handler: @escaping @Sendable (Request, Context) async throws -> some ResponseGenerator) -> Self {
        on(path, method: .post, access, use: handler)
    }

    @discardableResult
    func on(_ path: RouterPath, method: HTTPRequest.Method, _ access: Access,
            use handler: @escaping @Sendable (Request, Context) async throws -> some ResponseGenerator) -> Self {
        group().add(middleware: AccessCheck(access: access)).on(path, method: method, use: handler)
        return self
    }
}
