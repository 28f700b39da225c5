import Hummingbird

/// The console's one authentication step, run before every route: it puts
/// who is calling into the request's context — the principal of an
/// `Authorization: Bearer` token (for the API) and the dashboard session the
/// request's cookie names (for the dashboard).
///
/// It refuses nothing itself: a route that needs a caller is entered through
/// a child context that does (`APIRequestContext`: 401; the dashboard's:
/// the sign-in page), and a route that needs none answers as if it were not
/// there. What each role may do is declared with each route (RouteAccess.swift).
struct Authenticator: RouterMiddleware {
    typealias Context = ConsoleRequestContext

    let core: ConsoleCore
    let sessions: DashboardSessions

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        context.bearer = Result { () throws(ConsoleError) -> Principal in
            try core.access.authenticate(authorization: request.headers[.authorization])
        }
        context.session = sessions.signedIn(request)
        return try await next(request, context)
    }
}
