import FleetProtocol
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// The console's HTTP API (JSON under /api/v1, bearer tokens) and /metrics.
/// docs/api.md lists every route with its role and an example.
public enum HTTPAPI {
    public static func makeApplication(core: ConsoleCore, logger: Logger) throws -> some ApplicationProtocol {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: APINotFound())
        addRoutes(to: router, core: core)
        try Dashboard(core: core).addRoutes(to: router)
        return Application(
            router: router,
            configuration: .init(address: .hostname(core.configuration.httpHost, port: core.configuration.httpPort), serverName: "fleet-console"),
            logger: logger)
    }

    public static func addRoutes(to router: Router<BasicRequestContext>, core: ConsoleCore) {
        let encoder = FleetJSON.makeEncoder(sortedKeys: true)
        let limit = core.configuration.maxRequestBodyBytes

        /// Runs `body` with the caller's principal and turns its result or
        /// error into JSON; errors are always `{"error": {"code", "message"}}`.
        @Sendable func json(_ request: Request, status: HTTPResponse.Status = .ok, _ body: (Principal) async throws -> any Encodable) async -> Response {
            do {
                let principal = try core.authenticate(authorization: request.headers[.authorization])
                let value = try await body(principal)
                return respond(status, try encoder.encode(value))
            } catch let error as ConsoleError {
                return failure(error)
            } catch {
                return failure(.badRequest("\(error)"))
            }
        }

        @Sendable func respond(_ status: HTTPResponse.Status, _ data: Data) -> Response {
            var headers = HTTPFields()
            headers[.contentType] = "application/json; charset=utf-8"
            headers[.cacheControl] = "no-store"
            headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
            return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: Array(data))))
        }

        @Sendable func failure(_ error: ConsoleError) -> Response {
            struct Body: Encodable { var error: Inner; struct Inner: Encodable { var code: String; var message: String } }
            let data = (try? encoder.encode(Body(error: .init(code: error.code.rawValue, message: error.message)))) ?? Data()
            return respond(error.status, data)
        }

        @Sendable func decodeBody<T: Decodable & Sendable>(_ request: Request, as type: T.Type) async throws -> T {
            var request = request
            let buffer: ByteBuffer
            do { buffer = try await request.collectBody(upTo: limit) } catch {
                throw ConsoleError.tooLarge(limit: limit)
            }
            switch FleetJSON.decode(T.self, from: Array(buffer.readableBytesView)) {
            case .success(let value): return value
            case .failure(let error): throw ConsoleError.badRequest(error.message)
            }
        }

        @Sendable func query(_ request: Request, _ name: String) -> String? {
            request.uri.queryParameters.get(name).flatMap { $0.isEmpty ? nil : $0 }
        }

        // Liveness (no token): 200 while ingest makes progress and the store
        // commits, 503 naming what is stuck. Reads atomics only, so it
        // answers even when ingest is stuck holding the fleet model's lock.
        router.get("/healthz") { _, _ -> Response in
            let health = core.health()
            return respond(health.status == "ok" ? .ok : .serviceUnavailable, (try? encoder.encode(health)) ?? Data())
        }

        router.get("/metrics") { _, _ -> Response in
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4"
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: core.metricsText)))
        }

        router.get("/api/v1/sites") { request, _ in
            await json(request) { principal in ["sites": await core.sites(for: principal)] }
        }

        router.get("/api/v1/devices") { request, _ in
            await json(request) { principal in
                var state: DeviceState?
                if let s = query(request, "state") {
                    guard let parsed = DeviceState(rawValue: s) else { throw ConsoleError.badRequest("state: expected one of \(DeviceState.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(s)\"") }
                    state = parsed
                }
                var health: Health?
                if let h = query(request, "health") {
                    guard let parsed = Health(rawValue: h) else { throw ConsoleError.badRequest("health: expected ok, warning or critical, got \"\(h)\"") }
                    health = parsed
                }
                return ["devices": try core.devices(for: principal, site: query(request, "site"), state: state, health: health)]
            }
        }

        router.get("/api/v1/devices/:site/:device") { request, context in
            await json(request) { principal in
                try await core.device(site: context.parameters.get("site") ?? "", device: context.parameters.get("device") ?? "", for: principal)
            }
        }

        // Admin: forget a device (issue 20, items 10 and 18; docs/api.md). The body is optional.
        router.post("/api/v1/devices/:site/:device/forget") { request, context in
            await json(request) { principal in
                try core.require(.admin, principal, for: "forgetting a device")
                var request = request
                let buffer: ByteBuffer
                do { buffer = try await request.collectBody(upTo: limit) } catch {
                    throw ConsoleError.tooLarge(limit: limit)
                }
                var reason: String?
                if buffer.readableBytes > 0 {
                    switch FleetJSON.decode(ForgetRequest.self, from: Array(buffer.readableBytesView)) {
                    case .success(let body): reason = body.reason
                    case .failure(let error): throw ConsoleError.badRequest("expected no body or {\"reason\": \"…\"}: \(error.message)")
                    }
                }
                return try await core.forget(site: context.parameters.get("site") ?? "", device: context.parameters.get("device") ?? "", reason: reason, by: principal)
            }
        }

        router.post("/api/v1/commands") { request, _ in
            await json(request, status: .accepted) { principal in
                try core.require(.operator, principal, for: "sending commands")
                let submission = try await decodeBody(request, as: CommandSubmission.self)
                return try await core.submit(submission, by: principal)
            }
        }

        router.get("/api/v1/commands/:id") { request, context in
            await json(request) { principal in try await core.command(id: context.parameters.get("id") ?? "", for: principal) }
        }

        router.get("/api/v1/alerts") { request, _ in
            await json(request) { principal in
                var active = true
                if let a = query(request, "active") {
                    guard a == "true" || a == "false" else { throw ConsoleError.badRequest("active: expected true or false, got \"\(a)\"") }
                    active = a == "true"
                }
                return ["alerts": try await core.alerts(for: principal, activeOnly: active)]
            }
        }

        router.post("/api/v1/alerts/:id/ack") { request, context in
            await json(request) { principal in
                try core.require(.operator, principal, for: "acknowledging alerts")
                guard let id = context.parameters.get("id").flatMap(Int64.init) else { throw ConsoleError.badRequest("id: expected an alert number") }
                return try await core.acknowledgeAlert(id: id, by: principal)
            }
        }

        router.get("/api/v1/usage") { request, _ in
            await json(request) { principal in
                try core.usage(for: principal, site: query(request, "site"), from: query(request, "from"), to: query(request, "to"))
            }
        }

        router.post("/api/v1/rollouts") { request, _ in
            await json(request, status: .created) { principal in
                try core.require(.admin, principal, for: "creating rollouts")
                var request = request
                let buffer: ByteBuffer
                do { buffer = try await request.collectBody(upTo: limit) } catch {
                    throw ConsoleError.tooLarge(limit: limit)
                }
                let document: RolloutDocument
                switch RolloutDocument.decodeCollecting(Array(buffer.readableBytesView)) {
                case .success(let d): document = d
                case .failure(let error): throw ConsoleError.badRequest(error.reasons.joined(separator: "; "))
                }
                return try await core.createRollout(document, by: principal)
            }
        }

        router.get("/api/v1/rollouts") { request, _ in
            await json(request) { principal in ["rollouts": try await core.rolloutList(for: principal)] }
        }

        router.get("/api/v1/rollouts/:id") { request, context in
            await json(request) { principal in try await core.rollout(id: context.parameters.get("id") ?? "", for: principal) }
        }

        for action in ["pause", "resume", "abort"] {
            router.post("/api/v1/rollouts/:id/\(action)") { request, context in
                await json(request) { principal in
                    try await core.controlRollout(id: context.parameters.get("id") ?? "", action: action, by: principal)
                }
            }
        }

        router.get("/api/v1/audit") { request, _ in
            await json(request) { principal in
                var limit = 200
                if let l = query(request, "limit") {
                    guard let n = Int(l), (1...10_000).contains(n) else { throw ConsoleError.badRequest("limit: expected an integer from 1 to 10000, got \"\(l)\"") }
                    limit = n
                }
                return ["entries": try await core.auditEntries(for: principal, limit: limit)]
            }
        }
    }
}

/// Unknown routes under /api/ answer with the API's JSON error shape.
struct APINotFound: RouterMiddleware {
    typealias Context = BasicRequestContext
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound && request.uri.path.hasPrefix("/api/") {
            var headers = HTTPFields()
            headers[.contentType] = "application/json; charset=utf-8"
            let body = #"{"error":{"code":"not_found","message":"no such route: \#(request.method.rawValue) \#(request.uri.path)"}}"#
            return Response(status: .notFound, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
        }
    }
}
