import HTTPTypes

// Where a domain error meets HTTP: the one mapping from the core's error
// codes to the statuses the API has always answered with (docs/api.md).
extension ConsoleError {
    /// The HTTP status this error is answered with.
    public var status: HTTPResponse.Status {
        switch code.kind {
        case .invalidRequest: .badRequest
        case .unauthorized: .unauthorized
        case .forbidden: .forbidden
        case .notFound: .notFound
        case .conflict: .conflict
        case .tooLarge: .contentTooLarge
        case .unavailable: .serviceUnavailable
        }
    }
}

/// As the API answers it, e.g. `403 forbidden: sending commands needs the
/// operator role; …` (logs and the CLI print it so).
extension ConsoleError: CustomStringConvertible {
    public var description: String { "\(status.code) \(code): \(message)" }
}
