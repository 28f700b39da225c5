/// Why the console refused a request, as the core says it: a stable code
/// (the API's wire `error.code`, which the CLI and scripts match on) and a
/// message that names what was wrong and what was expected.
///
/// The core knows nothing of HTTP: the HTTP layer gives each code its
/// status (ConsoleError+HTTP.swift). An error that is not a `ConsoleError`
/// is a fault of the console, not of the request (ErrorMiddleware.swift).
public struct ConsoleError: Error, Sendable, Equatable {
    /// A stable wire code. A struct over an enum, so codes can be added
    /// without breaking code outside the module that matches on them.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        enum Kind: String, Sendable, CaseIterable {
            case invalidRequest = "invalid_request"
            case unauthorized
            case forbidden
            case notFound = "not_found"
            case conflict
            case tooLarge = "too_large"
            case unavailable
        }

        let kind: Kind

        /// The request names a field wrongly; the message names the field and what was expected.
        public static let invalidRequest = Code(kind: .invalidRequest)
        /// No bearer token, or one not in force.
        public static let unauthorized = Code(kind: .unauthorized)
        /// The token's role or sites are not enough; the message says which.
        public static let forbidden = Code(kind: .forbidden)
        public static let notFound = Code(kind: .notFound)
        /// The request clashes with the state (e.g. a rollout already on those devices).
        public static let conflict = Code(kind: .conflict)
        /// A request body over `max_request_body_bytes`.
        public static let tooLarge = Code(kind: .tooLarge)
        /// The console cannot answer now (its store failed); worth retrying.
        public static let unavailable = Code(kind: .unavailable)

        /// The code on the wire, e.g. `invalid_request`.
        public var rawValue: String { kind.rawValue }
        public var description: String { rawValue }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public static func badRequest(_ message: String) -> ConsoleError { .init(.invalidRequest, message) }
    public static func unauthorized(_ message: String = "a valid bearer token is required (Authorization: Bearer <token>)") -> ConsoleError { .init(.unauthorized, message) }
    public static func forbidden(_ message: String) -> ConsoleError { .init(.forbidden, message) }
    public static func notFound(_ message: String) -> ConsoleError { .init(.notFound, message) }
    public static func conflict(_ message: String) -> ConsoleError { .init(.conflict, message) }
    public static func tooLarge(limit: Int) -> ConsoleError { .init(.tooLarge, "request body over \(limit) bytes") }
    public static func unavailable(_ message: String) -> ConsoleError { .init(.unavailable, message) }
}
