import Hummingbird

/// The context of every request the console answers. `Authenticator`, the
/// console's one authentication step, fills in who is calling before any
/// route runs; a route that needs a caller takes it from a child context
/// (`APIRequestContext`, `DashboardRequestContext`), and a route that needs
/// none (/healthz, /metrics, the sign-in page, static files) never looks.
struct ConsoleRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// The principal of the request's `Authorization: Bearer` token, or the
    /// 401 it earns (no token, or one not in force). Only the API reads it.
    var bearer: Result<Principal, ConsoleError> = .failure(.unauthorized())
    /// The dashboard session the request's cookie names, while it is signed
    /// in. Only the dashboard reads it: the API never takes a cookie, so no
    /// other web page can make a signed-in browser call it.
    var session: DashboardSessions.SignedIn?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }
}

/// The context of the API's routes (under /api/v1): a caller with a valid
/// bearer token. Made as a route is entered; a request without such a token
/// ends there with 401 `unauthorized`, before any handler runs.
struct APIRequestContext: ChildRequestContext {
    var coreContext: CoreRequestContextStorage
    let principal: Principal

    init(context: ConsoleRequestContext) throws {
        principal = try context.bearer.get()
        // The whole storage, so the route's parameters come along.
        coreContext = context.coreContext
    }
}
