/// A test fixture could not do what a test asked of it.
///
/// The message names what went wrong and what to do about it, and carries
/// whatever evidence the fixture has (the tail of a broker log, a tool's
/// standard error), so a failing test explains itself without a re-run.
public struct FixtureError: Error, CustomStringConvertible, Sendable {
    public let message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}
