import FleetProtocol
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// The console's HTTP API (JSON under /api/v1, bearer tokens), /healthz,
/// /metrics and the dashboard. docs/api.md lists every route with its role.
///
/// Every request passes `ErrorMiddleware` (how errors are answered), then
/// `Authenticator` (who is calling), then its route. API routes are entered
/// through `APIRequestContext` (a valid token, or 401) and declare their
/// `Access` (role and sites, or 403); their handlers only do the work.
/// The routes of each resource are in HTTPAPI+<resource>.swift.
public enum HTTPAPI {
    public static func makeApplication(core: ConsoleCore, logger: Logger) throws -> some ApplicationProtocol {
        Application(
            router: router(core: core, dashboard: try Dashboard(core: core)),
            configuration: .init(address: .hostname(core.configuration.httpHost, port: core.configuration.httpPort), serverName: "fleet-console"),
            logger: logger)
    }

    /// Every route of the console behind the error mapping and the authentication step.
    static func router(core: ConsoleCore, dashboard: Dashboard) -> Router<ConsoleRequestContext> {
        let router = Router(context: ConsoleRequestContext.self)
        router.add(middleware: ErrorMiddleware())
        router.add(middleware: Authenticator(core: core, sessions: dashboard.sessions))
        addOpenRoutes(to: router, core: core)
        let api = router.group("/api/v1", context: APIRequestContext.self)
        addFleetRoutes(to: api, core: core)
        addCommandRoutes(to: api, core: core)
        addRolloutRoutes(to: api, core: core)
        dashboard.addRoutes(to: router)
        return router
    }

    /// The routes that need no token.
    static func addOpenRoutes(to router: Router<ConsoleRequestContext>, core: ConsoleCore) {
        // Liveness: 200 while ingest makes progress and the store commits,
        // 503 naming what is stuck. Reads atomics only, so it answers even
        // when ingest is stuck holding the fleet model's lock.
        router.get("/healthz") { _, _ -> Response in
            let health = core.health()
            return json(health.status == "ok" ? .ok : .serviceUnavailable, (try? FleetJSON.encode(health, sortedKeys: true)) ?? Data())
        }

        router.get("/metrics") { _, _ -> Response in
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4"
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: core.metricsText)))
        }
    }

    // MARK: Requests and answers

    /// A JSON answer: never cached, never sniffed as anything else.
    static func json(_ status: HTTPResponse.Status, _ data: Data) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        headers[.cacheControl] = "no-store"
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: Array(data))))
    }

    /// The API's error shape, `{"error": {"code", "message"}}`.
    static func error(_ status: HTTPResponse.Status, code: String, message: String) -> Response {
        struct Body: Encodable { var error: Inner; struct Inner: Encodable { var code: String; var message: String } }
        return json(status, (try? FleetJSON.encode(Body(error: .init(code: code, message: message)), sortedKeys: true)) ?? Data())
    }

    /// A query parameter, nil when absent or empty.
    static func query(_ request: Request, _ name: String) -> String? {
        request.uri.queryParameters.get(name).flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The request's body, at most `limit` bytes (413 `too_large` beyond).
    static func body(_ request: Request, limit: Int) async throws(ConsoleError) -> ByteBuffer {
        var request = request
        do { return try await request.collectBody(upTo: limit) } catch { throw .tooLarge(limit: limit) }
    }

    /// The body decoded as `T`; 400 `invalid_request` naming the field and
    /// what was expected when it does not fit.
    static func decodeBody<T: Decodable & Sendable>(_ request: Request, as type: T.Type, limit: Int) async throws(ConsoleError) -> T {
        let buffer = try await body(request, limit: limit)
        switch FleetJSON.decode(T.self, from: Array(buffer.readableBytesView)) {
        case .success(let value): return value
        case .failure(let error): throw .badRequest(error.message)
        }
    }
}

/// A JSON answer of the API: `value` in the wire's encoding (sorted keys).
/// A value that cannot be encoded is the console's fault: 500 `internal`.
struct APIReply<Value: Encodable>: ResponseGenerator {
    var status: HTTPResponse.Status
    var value: Value

    init(_ value: Value) {
        self.init(.ok, value)
    }

    init(_ status: HTTPResponse.Status, _ value: Value) {
        self.status = status
        self.value = value
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        HTTPAPI.json(status, try FleetJSON.encode(value, sortedKeys: true))
    }
}
