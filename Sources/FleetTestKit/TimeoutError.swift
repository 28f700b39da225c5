/// A condition a test waited for did not become true before its deadline.
///
/// Thrown by ``waitUntil(timeout:pollEvery:_:isolation:_:)`` and by every
/// fixture wait (broker start-up, process exit, log output). `condition`
/// is the caller's description of what it waited for; `detail`, when
/// present, is evidence gathered at the deadline (an output tail).
public struct TimeoutError: Error, CustomStringConvertible, Sendable {
    public let condition: String
    public let timeout: Duration
    public let detail: String?

    public init(condition: String, timeout: Duration, detail: String? = nil) {
        self.condition = condition
        self.timeout = timeout
        self.detail = detail
    }

    public var description: String {
        var text = "timed out after \(timeout) waiting for: \(condition)"
        if let detail, !detail.isEmpty {
            text += "\n\(detail)"
        }
        return text
    }
}
