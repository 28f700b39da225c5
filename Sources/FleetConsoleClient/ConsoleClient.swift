import FleetProtocol
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A small client of the console's HTTP API: what `fleet-console`'s client
/// subcommands (devices, start, alerts, rollout, …) call. Every request
/// carries the token as a bearer token; a reply outside 2xx becomes a
/// `ConsoleClientError` (see `failure(status:body:)`).
public struct ConsoleClient: Sendable {
    /// The console's base URL, without a trailing slash.
    public let base: String
    public let token: String

    /// `api` is the console's base URL (a trailing slash is dropped);
    /// `token` an API token.
    public init(api: String, token: String) {
        base = api.hasSuffix("/") ? String(api.dropLast()) : api
        self.token = token
    }

    /// Sends one request (a JSON body when given) and returns the reply's
    /// body; throws `ConsoleClientError` when the console cannot be reached
    /// or answers outside 2xx.
    public func call(_ method: String, _ path: String, body: Data? = nil) async throws -> Data {
        guard let url = URL(string: base + path) else { throw ConsoleClientError("not a valid URL: \(base + path)") }
        var request = URLRequest(url: url, timeoutInterval: 30)
        request.httpMethod = method
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        if let body {
            request.httpBody = body
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response): (Data, URLResponse)
        do { (data, response) = try await URLSession.shared.data(for: request) } catch {
            throw ConsoleClientError("cannot reach the console at \(base): \(error.localizedDescription)")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) else { throw Self.failure(status: status, body: data) }
        return data
    }

    /// GETs `path` and decodes it as `T` (the API's JSON conventions,
    /// `FleetJSON`); returns the raw body too, for `--json`.
    public func get<T: Decodable>(_ path: String, as type: T.Type) async throws -> (T, Data) {
        let data = try await call("GET", path)
        return (try FleetJSON.makeDecoder().decode(T.self, from: data), data)
    }

    /// The error for a reply outside 2xx: the API's
    /// `{"error": {"code", "message"}}` as "message (HTTP status code)",
    /// else the status and the first 500 bytes of the body.
    public static func failure(status: Int, body: Data) -> ConsoleClientError {
        struct Failure: Decodable { var error: Inner; struct Inner: Decodable { var code: String; var message: String } }
        if let failure = try? JSONDecoder().decode(Failure.self, from: body) {
            return ConsoleClientError("\(failure.error.message) (HTTP \(status) \(failure.error.code))")
        }
        return ConsoleClientError("HTTP \(status): \(String(decoding: body.prefix(500), as: UTF8.self))")
    }
}
