import FleetProtocol
import Foundation

// Shared by the agent's and the console's YAML configuration files: every
// problem is collected and reported with its dotted key, and unknown keys
// are errors (a typo never passes silently).

/// Reads typed values out of a YAML mapping by dotted key, collecting problems.
public struct ConfigReader {
    public let root: [String: Any]
    public let known: [String: Set<String>]
    public var problems: [ConfigurationError.Problem] = []

    public init(root: [String: Any], known: [String: Set<String>]) {
        self.root = root
        self.known = known
    }

    public mutating func problem(_ key: String, _ message: String) {
        problems.append(.init(key: key, message: message))
    }

    public func value(_ key: String) -> Any? {
        var node: Any = root
        for part in key.split(separator: ".") {
            guard let dict = node as? [String: Any], let next = dict[String(part)] else { return nil }
            node = next
        }
        return node is NSNull ? nil : node
    }

    public func has(_ key: String) -> Bool { value(key) != nil }

    public mutating func string(_ key: String) -> String? {
        guard let v = value(key) else { return nil }
        if let s = v as? String { return s }
        if v is Int || v is Double { return "\(v)" }
        problem(key, "expected a string")
        return nil
    }

    public mutating func int(_ key: String, in range: ClosedRange<Int>) -> Int? {
        guard let v = value(key) else { return nil }
        guard let i = v as? Int else {
            problem(key, "expected an integer from \(range.lowerBound) to \(range.upperBound), got \(v)")
            return nil
        }
        guard range.contains(i) else {
            problem(key, "expected an integer from \(range.lowerBound) to \(range.upperBound), got \(i)")
            return nil
        }
        return i
    }

    public mutating func double(_ key: String, in range: ClosedRange<Double>) -> Double? {
        guard let v = value(key) else { return nil }
        guard let d = (v as? Double) ?? (v as? Int).map(Double.init), d.isFinite else {
            problem(key, "expected a number from \(range.lowerBound) to \(range.upperBound), got \(v)")
            return nil
        }
        guard range.contains(d) else {
            problem(key, "expected a number from \(range.lowerBound) to \(range.upperBound), got \(d)")
            return nil
        }
        return d
    }

    public mutating func bool(_ key: String) -> Bool? {
        guard let v = value(key) else { return nil }
        guard let b = v as? Bool else {
            problem(key, "expected true or false, got \(v)")
            return nil
        }
        return b
    }

    public mutating func identifier(_ text: String?, key: String) -> Identifier? {
        guard let text else {
            problem(key, "required: \(Identifier.ruleInWords)")
            return nil
        }
        guard let id = Identifier(rawValue: text) else {
            problem(key, "\"\(text)\" is not a valid identifier: \(Identifier.ruleInWords)")
            return nil
        }
        return id
    }

    /// An unknown key is a mistake (a typo would otherwise be ignored silently).
    public mutating func checkUnknownKeys() {
        func walk(_ node: [String: Any], _ path: String) {
            let allowed = known[path] ?? []
            for (key, value) in node {
                let full = path.isEmpty ? key : "\(path).\(key)"
                if !allowed.contains(key) {
                    problems.append(.init(key: full, message: "unknown key; expected one of: \(allowed.sorted().joined(separator: ", "))"))
                } else if let child = value as? [String: Any], known[full] != nil {
                    walk(child, full)
                }
            }
        }
        walk(root, "")
    }
}

extension ConfigReader {
    /// Parses YAML text already loaded as a mapping (Yams.load) or reports why not.
    public static func mapping(_ loaded: Any?, source: String) throws(ConfigurationError) -> [String: Any] {
        guard let loaded else { return [:] }
        guard let dict = loaded as? [String: Any] else {
            throw ConfigurationError(source: source, problems: [.init(key: "", message: "expected a YAML mapping of keys at the top level")])
        }
        return dict
    }
}
