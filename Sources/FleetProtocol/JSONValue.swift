import Foundation

/// Free-form JSON: a command's `params`, a reply's `result`. Integers that
/// fit in `Int64` stay exact (`integer`); other numbers are `number`. An
/// `integer` and a `number` of the same value are equal.
public enum JSONValue: Sendable, Codable, Equatable, Hashable {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// A `Decoder` cannot say what kind of value comes next, so this tries
    /// the kinds in turn, and every miss costs a thrown `DecodingError`
    /// (a few microseconds each, with its coding path and message). The
    /// order puts the common kinds first — strings (ids, actions, names),
    /// then objects — so a command's envelope costs two misses instead of
    /// sixteen. Only `integer` before `number` matters for the result.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([String: JSONValue].self) {
            self = .object(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else {
            self = .array(try container.decode([JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let v): try container.encode(v)
        case .integer(let v): try container.encode(v)
        case .number(let v): try container.encode(v)
        case .string(let v): try container.encode(v)
        case .array(let v): try container.encode(v)
        case .object(let v): try container.encode(v)
        }
    }

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): true
        case (.bool(let a), .bool(let b)): a == b
        case (.integer(let a), .integer(let b)): a == b
        case (.number(let a), .number(let b)): a == b
        case (.integer(let a), .number(let b)), (.number(let b), .integer(let a)): Double(a) == b
        case (.string(let a), .string(let b)): a == b
        case (.array(let a), .array(let b)): a == b
        case (.object(let a), .object(let b)): a == b
        default: false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0)
        case .bool(let v): hasher.combine(v)
        case .integer(let v): hasher.combine(Double(v))
        case .number(let v): hasher.combine(v)
        case .string(let v): hasher.combine(v)
        case .array(let v): hasher.combine(v)
        case .object(let v): hasher.combine(v)
        }
    }

    // MARK: Access

    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    public subscript(index: Int) -> JSONValue? {
        if case .array(let items) = self, items.indices.contains(index) { return items[index] }
        return nil
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let v) = self { return v }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let v) = self { return v }
        return nil
    }

    public var stringValue: String? {
        if case .string(let v) = self { return v }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let v) = self { return v }
        return nil
    }

    /// An integer, or a `number` with no fractional part that fits in `Int`.
    public var intValue: Int? {
        switch self {
        case .integer(let v): return Int(exactly: v)
        case .number(let v): return Int(exactly: v)
        default: return nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case .integer(let v): return Double(v)
        case .number(let v): return v
        default: return nil
        }
    }

    public var isNull: Bool { self == .null }

    /// The value at a decoding path (object keys and array indices), used to
    /// say what was found where a decoding failed.
    public func value(at path: [any CodingKey]) -> JSONValue? {
        var current = self
        for key in path {
            if case .array(let items) = current, let index = key.intValue {
                guard items.indices.contains(index) else { return nil }
                current = items[index]
            } else if case .object(let members) = current, let next = members[key.stringValue] {
                current = next
            } else {
                return nil
            }
        }
        return current
    }

    // MARK: Conversion

    /// The JSON form of an `Encodable` value, encoded with `FleetJSON`.
    public init<T: Encodable>(encoding value: T) throws {
        let data = try FleetJSON.sharedEncoder.encode(value)
        self = try FleetJSON.sharedDecoder.decode(JSONValue.self, from: data)
    }

    /// Decodes a `Decodable` value from this JSON with `FleetJSON`.
    public func decode<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        try FleetJSON.sharedDecoder.decode(T.self, from: FleetJSON.sharedEncoder.encode(self))
    }

    /// Short, human form used in error messages: strings quoted (and cut
    /// at 60 characters), numbers and literals as written, containers by kind.
    public var briefDescription: String {
        switch self {
        case .null: "null"
        case .bool(let v): v ? "true" : "false"
        case .integer(let v): String(v)
        case .number(let v): v.rounded() == v && abs(v) < 1e15 ? String(Int64(v)) : String(v)
        case .string(let v): quoted(v)
        case .array: "an array"
        case .object: "an object"
        }
    }
}

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral,
    ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}

/// `value` in double quotes with JSON escapes, cut at `limit` characters
/// (with `…`), for error messages that name a value.
func quoted(_ value: String, limit: Int = 60) -> String {
    var out = "\""
    var count = 0
    for scalar in value.unicodeScalars {
        if count == limit {
            out += "…"
            break
        }
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20 || scalar.value == 0x7F:
            out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                + String(scalar.value, radix: 16)
        default: out.unicodeScalars.append(scalar)
        }
        count += 1
    }
    return out + "\""
}
