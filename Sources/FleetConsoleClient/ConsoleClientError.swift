/// Why a call to the console's API failed, in words for the operator: the
/// server's own message and code when it sent one, else the HTTP status or
/// the transport failure. `fleet-console` prints it and exits 1.
public struct ConsoleClientError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ text: String) { description = text }
}
