/// A site, device, program, zone or point id on the wire:
/// `[a-z0-9][a-z0-9_-]{0,62}` (DESIGN.md §3). Anything else is refused at
/// configuration time, so a topic can never be built from a bad id.
public struct Identifier: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// The rule, as written in the contract.
    public static let rule = "[a-z0-9][a-z0-9_-]{0,62}"
    /// The rule in words, for error messages.
    public static let ruleInWords =
        "lowercase letters, digits, '_' or '-', starting with a letter or digit, at most 63 characters"
    public static let maxLength = 63

    public let rawValue: String

    /// Nil when `rawValue` breaks the rule.
    public init?(rawValue: String) {
        guard Self.isValid(rawValue) else { return nil }
        self.rawValue = rawValue
    }

    /// Validates `value`; the error names the value, what it was meant to be
    /// (`what`, e.g. "site") and the rule.
    public init(validating value: String, as what: String = "identifier") throws(IdentifierError) {
        guard Self.isValid(value) else { throw IdentifierError(value: value, what: what) }
        self.rawValue = value
    }

    public static func isValid(_ value: String) -> Bool {
        let bytes = value.utf8
        guard let first = bytes.first, bytes.count <= maxLength, isLowerAlnum(first) else { return false }
        return bytes.dropFirst().allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    private static func isLowerAlnum(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
    }

    public var description: String { rawValue }

    public static func < (lhs: Identifier, rhs: Identifier) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let value = try container.decode(String.self)
        guard Self.isValid(value) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "expected an id matching \(Self.rule)")
        }
        self.rawValue = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// A value that is not a valid `Identifier`.
public struct IdentifierError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The refused value, as given.
    public let value: String
    /// What it was meant to be ("site", "device", "program id", …).
    public let what: String

    public var description: String {
        "\(what) \(quoted(value)) is not a valid id: expected \(Identifier.rule) (\(Identifier.ruleInWords))"
    }
}
