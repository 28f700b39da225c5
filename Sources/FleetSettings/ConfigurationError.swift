/// A configuration problem: the key (dotted path) and what was expected.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        public var key: String
        public var message: String
        public init(key: String, message: String) {
            self.key = key
            self.message = message
        }
        public var description: String { key.isEmpty ? message : "\(key): \(message)" }
    }

    public var source: String
    public var problems: [Problem]

    public init(source: String, problems: [Problem]) {
        self.source = source
        self.problems = problems
    }

    public var description: String {
        "invalid configuration (\(source)):\n" + problems.map { "  - \($0)" }.joined(separator: "\n")
    }
}
