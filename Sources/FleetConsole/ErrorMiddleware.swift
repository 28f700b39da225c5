import HTTPTypes
import Hummingbird
import Logging

/// How an error a route throws becomes an answer, for every route:
///
/// - a domain error (`ConsoleError`) is answered with its status
///   (ConsoleError+HTTP.swift): under /api/ as the API's JSON error
///   `{"error": {"code", "message"}}`, on the dashboard as a line of text;
/// - Hummingbird's own (`HTTPResponseError`) as Hummingbird answers it,
///   except that no such route under /api/ gets the API's JSON shape;
/// - anything else is a fault of the console, not of the request: it is
///   logged with the request's id and answered 500 `internal`, with none of
///   the error's text in the body (it may name files, queries or hosts).
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = ConsoleRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let isAPI = request.uri.path.hasPrefix("/api/")
        do {
            return try await next(request, context)
        } catch let error as ConsoleError {
            return isAPI ? HTTPAPI.error(error.status, code: error.code.rawValue, message: error.message) : Dashboard.text(error.status, error.message)
        } catch let error as HTTPError where error.status == .notFound && isAPI {
            return HTTPAPI.error(.notFound, code: ConsoleError.Code.notFound.rawValue, message: "no such route: \(request.method.rawValue) \(request.uri.path)")
        } catch let error as any HTTPResponseError {
            throw error
        } catch {
            let requestID = context.logger[metadataKey: "hb.request.id"].map { " (request \($0))" } ?? ""
            context.logger.error("a request failed with an unexpected error; answered 500 internal", metadata: [
                "error": "\(String(reflecting: error))", "http.method": "\(request.method.rawValue)", "http.path": "\(request.uri.path)",
            ])
            let message = "the console failed to answer this request: an internal error, in its log\(requestID)"
            return isAPI ? HTTPAPI.error(.internalServerError, code: "internal", message: message) : Dashboard.text(.internalServerError, message)
        }
    }
}
