import Foundation

/// An error as it goes on the wire in a command reply: a stable `code` and a
/// human `message` that names the field and what was expected.
public struct ProtocolError: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String

    public init(code: ErrorCode, message: String) {
        self.code = code
        self.message = message
    }

    enum CodingKeys: String, CodingKey { case code, message }

    /// Reads an error; a device's `message` is cut to
    /// `ProtocolLimits.maxTextBytes` (docs/protocol.md, "Limits").
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        code = try c.decode(ErrorCode.self, forKey: .code)
        message = ProtocolLimits.boundedText(try c.decode(String.self, forKey: .message))
    }

    public var description: String { "\(code): \(message)" }

    public static func badRequest(_ message: String) -> ProtocolError { .init(code: .badRequest, message: message) }
    public static func invalidParams(_ message: String) -> ProtocolError { .init(code: .invalidParams, message: message) }
    public static func busy(_ message: String) -> ProtocolError { .init(code: .busy, message: message) }
    public static func unsafe(_ message: String) -> ProtocolError { .init(code: .unsafe, message: message) }
    public static func notFound(_ message: String) -> ProtocolError { .init(code: .notFound, message: message) }
    public static func `internal`(_ message: String) -> ProtocolError { .init(code: .internal, message: message) }

    /// `unknown action "dance"; known: start_session, …`
    public static func unknownAction(_ action: String) -> ProtocolError {
        .init(code: .unknownAction, message: "unknown action \(quoted(action)); known: \(Action.knownList)")
    }

    /// `command expired at …; received at …`
    public static func expired(expiresAt: Date, now: Date) -> ProtocolError {
        .init(code: .expired,
              message: "command expired at \(RFC3339.string(from: expiresAt)); received at \(RFC3339.string(from: now))")
    }
}

/// A coding key for any string or index; used to see every key of an object
/// (a keyed container over an enum drops the keys it does not know).
public struct AnyCodingKey: CodingKey, Hashable, Sendable {
    public var stringValue: String
    public var intValue: Int?

    public init(_ string: String) {
        self.stringValue = string
        self.intValue = nil
    }

    public init(index: Int) {
        self.stringValue = "Index \(index)"
        self.intValue = index
    }

    public init?(stringValue: String) { self.init(stringValue) }
    public init?(intValue: Int) { self.init(index: intValue) }
}

// MARK: Readable decoding errors

/// `params.steps[0].intensity`: keys joined by dots, indices in brackets,
/// after an optional prefix.
func dottedPath(_ prefix: String?, _ path: [any CodingKey]) -> String {
    var out = prefix ?? ""
    for key in path {
        if let index = key.intValue {
            out += "[\(index)]"
        } else {
            out += out.isEmpty ? key.stringValue : "." + key.stringValue
        }
    }
    return out
}

/// What a field of `type` should be, in words.
func expectation(for type: Any.Type) -> String {
    switch type {
    case is Bool.Type: return "true or false"
    case is String.Type: return "a string"
    case is Date.Type: return RFC3339.expectation.replacingOccurrences(of: "expected ", with: "")
    case is Int.Type, is Int8.Type, is Int16.Type, is Int32.Type, is Int64.Type: return "an integer"
    case is UInt.Type, is UInt8.Type, is UInt16.Type, is UInt32.Type, is UInt64.Type: return "a non-negative integer"
    case is Double.Type, is Float.Type: return "a number"
    default:
        let name = String(describing: type)
        if name.hasPrefix("Array<") || name.hasPrefix("[") { return "an array" }
        if name.hasPrefix("Dictionary<") || name.hasPrefix("KeyedDecodingContainer") { return "an object" }
        return "a valid \(name)"
    }
}

/// Turns a Swift `DecodingError` into a message that names the field (with
/// dots, after `prefix`), what was expected and, when `root` is the JSON
/// that was decoded, what was found:
/// `params.intensity: expected an integer 1–10, got "high"`,
/// `params.steps[0]: missing field "technique"`, `missing field "action"`.
///
/// Decoders of this module throw `DecodingError`s whose debug description
/// starts with "expected"; those descriptions are used as they are.
/// Without `root`, the message says what was expected but not what was found.
extension DecodingError {
    public func readableMessage(root: JSONValue?, prefix: String? = nil) -> String {
        FleetProtocol.readableMessage(self, root: root, prefix: prefix)
    }
}

func readableMessage(_ error: DecodingError, root: JSONValue?, prefix: String? = nil) -> String {
    func at(_ path: [any CodingKey]) -> String { dottedPath(prefix, path) }
    func found(_ path: [any CodingKey]) -> String {
        guard let root, let value = root.value(at: path) else { return "" }
        return ", got \(value.briefDescription)"
    }
    func located(_ path: [any CodingKey], _ text: String) -> String {
        let location = at(path)
        return location.isEmpty ? text : "\(location): \(text)"
    }
    switch error {
    case .keyNotFound(let key, let context):
        return located(context.codingPath, "missing field \(quoted(key.stringValue))")
    case .typeMismatch(let type, let context):
        let expected = context.debugDescription.hasPrefix("expected")
            ? context.debugDescription : "expected \(expectation(for: type))"
        return located(context.codingPath, expected + found(context.codingPath))
    case .valueNotFound(let type, let context):
        let expected = context.debugDescription.hasPrefix("expected")
            ? context.debugDescription : "expected \(expectation(for: type))"
        return located(context.codingPath, expected + ", got null")
    case .dataCorrupted(let context):
        let text = context.debugDescription
        if text.hasPrefix("expected") {
            return located(context.codingPath, text + found(context.codingPath))
        }
        if context.codingPath.isEmpty, root == nil {
            var detail = ""
            if let underlying = context.underlyingError as NSError?,
               let reason = underlying.userInfo[NSDebugDescriptionErrorKey] as? String
            {
                detail = " (\(reason))"
            }
            return "not valid JSON\(detail)"
        }
        if text.contains("not valid JSON") {
            // The JSON parsed, so this is Foundation's wording for a number
            // that does not fit an integer field (2.5, -1, 1e300); it gives
            // neither path nor value, so name the numbers that could be it.
            let suspects = root.map { numbersThatAreNotCounts(in: $0, path: prefix ?? "") } ?? []
            let hint = suspects.isEmpty ? "" : ": check " + suspects.prefix(3).joined(separator: ", ")
            return located(context.codingPath, "a number does not fit its field (expected an integer in range)\(hint)")
        }
        return located(context.codingPath, text)
    @unknown default:
        return located([], "\(error)")
    }
}

/// `path = value` for every number under `value` that is not a
/// non-negative integer, in key order.
private func numbersThatAreNotCounts(in value: JSONValue, path: String) -> [String] {
    switch value {
    case .number(let v) where !(v.rounded() == v && v >= 0 && v < 9.2e18):
        return ["\(path.isEmpty ? "value" : path) = \(value.briefDescription)"]
    case .integer(let v) where v < 0:
        return ["\(path.isEmpty ? "value" : path) = \(v)"]
    case .array(let items):
        return items.enumerated().flatMap { numbersThatAreNotCounts(in: $1, path: "\(path)[\($0)]") }
    case .object(let members):
        return members.keys.sorted().flatMap {
            numbersThatAreNotCounts(in: members[$0]!, path: path.isEmpty ? $0 : "\(path).\($0)")
        }
    default:
        return []
    }
}

// MARK: Validating decode helpers

extension KeyedDecodingContainer {
    /// The object's keys (as written) that are not in `known`, sorted.
    func unknownKeys(known: some Collection<String>) -> [String] where Key == AnyCodingKey {
        allKeys.map(\.stringValue).filter { !known.contains($0) }.sorted()
    }

    /// An integer in `range`; a wrong type, null or a value out of range
    /// throws `expected an integer lo–hi` at the key's path.
    func decodeInt(_ key: Key, in range: ClosedRange<Int>) throws -> Int {
        try decodeChecked(Int.self, key, "expected an integer \(range.lowerBound)–\(range.upperBound)") { range.contains($0) }
    }

    func decodeIntIfPresent(_ key: Key, in range: ClosedRange<Int>) throws -> Int? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        return try decodeInt(key, in: range)
    }

    /// A value of `type` that passes `check`; anything else throws
    /// `expectation` at the key's path (a missing key stays `keyNotFound`).
    func decodeChecked<T: Decodable>(
        _ type: T.Type, _ key: Key, _ expectation: String, check: (T) -> Bool = { _ in true }
    ) throws -> T {
        let value: T
        do {
            value = try decode(T.self, forKey: key)
        } catch DecodingError.keyNotFound(let k, let context) {
            throw DecodingError.keyNotFound(k, context)
        } catch {
            // Foundation reports some mismatches (2.5 or -1 read as an
            // integer) with an internal error and no path; name the key here.
            throw DecodingError.typeMismatch(T.self, .init(codingPath: codingPath + [key], debugDescription: expectation))
        }
        guard check(value) else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath + [key], debugDescription: expectation))
        }
        return value
    }

    /// A count, sequence number, epoch or version: an integer from 0 to
    /// `ProtocolLimits.maxInteger` (2^53).
    func decodeCount(_ key: Key) throws -> UInt64 {
        try decodeChecked(UInt64.self, key, countExpectation) { $0 <= ProtocolLimits.maxInteger }
    }

    func decodeCountIfPresent(_ key: Key) throws -> UInt64? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        return try decodeCount(key)
    }

    /// An object of counts (`{"calf": 1800, …}`), each checked as
    /// `decodeCount`: a bad entry is named by its own path
    /// (`seconds.by_zone.calf`).
    func decodeCounts(_ key: Key) throws -> [String: UInt64] {
        try decodeEntries(key, "expected an object of integers 0–\(ProtocolLimits.maxInteger)") { c, k in try c.decodeCount(k) }
    }

    /// A finite number in `range` (measurements, durations).
    func decodeNumber(_ key: Key, in range: ClosedRange<Double>) throws -> Double {
        try decodeChecked(Double.self, key, numberExpectation(range)) { $0.isFinite && range.contains($0) }
    }

    func decodeNumberIfPresent(_ key: Key, in range: ClosedRange<Double>) throws -> Double? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        return try decodeNumber(key, in: range)
    }

    /// An object of numbers in `range` (`{"shin": 38.5}`), each named by its path.
    func decodeNumbers(_ key: Key, in range: ClosedRange<Double>) throws -> [String: Double] {
        try decodeEntries(key, "expected an object of numbers \(plainNumber(range.lowerBound))–\(plainNumber(range.upperBound))") { c, k in
            try c.decodeNumber(k, in: range)
        }
    }

    private func decodeEntries<T>(
        _ key: Key, _ expectation: String, _ entry: (KeyedDecodingContainer<AnyCodingKey>, AnyCodingKey) throws -> T
    ) throws -> [String: T] {
        let inner: KeyedDecodingContainer<AnyCodingKey>
        do {
            inner = try nestedContainer(keyedBy: AnyCodingKey.self, forKey: key)
        } catch DecodingError.keyNotFound(let k, let context) {
            throw DecodingError.keyNotFound(k, context)
        } catch {
            throw DecodingError.typeMismatch([String: T].self, .init(codingPath: codingPath + [key], debugDescription: expectation))
        }
        let keys = inner.allKeys
        guard keys.count <= ProtocolLimits.maxListItems else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath + [key], debugDescription: "\(expectation), of at most \(ProtocolLimits.maxListItems) entries"))
        }
        var out: [String: T] = [:]
        for k in keys {
            guard k.stringValue.utf8.count <= ProtocolLimits.maxNameBytes else {
                throw DecodingError.dataCorrupted(.init(codingPath: codingPath + [key], debugDescription: "\(expectation), each key \(nameExpectation.dropFirst("expected ".count))"))
            }
            out[k.stringValue] = try entry(inner, k)
        }
        return out
    }

    /// A name (an id, a program, a zone, a fault): at most
    /// `ProtocolLimits.maxNameBytes` UTF-8 bytes.
    func decodeName(_ key: Key) throws -> String {
        try decodeChecked(String.self, key, nameExpectation) { $0.utf8.count <= ProtocolLimits.maxNameBytes }
    }

    func decodeNameIfPresent(_ key: Key) throws -> String? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        return try decodeName(key)
    }

    /// A list of names: at most `ProtocolLimits.maxListItems`, each a name.
    func decodeNames(_ key: Key) throws -> [String] {
        try decodeChecked([String].self, key, namesExpectation) {
            $0.count <= ProtocolLimits.maxListItems && $0.allSatisfy { $0.utf8.count <= ProtocolLimits.maxNameBytes }
        }
    }

    func decodeNamesIfPresent(_ key: Key) throws -> [String]? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        return try decodeNames(key)
    }

    /// Free text, cut to `ProtocolLimits.maxTextBytes`.
    func decodeTextIfPresent(_ key: Key) throws -> String? {
        try decodeIfPresent(String.self, forKey: key).map(ProtocolLimits.boundedText)
    }

    /// A list of free texts: at most `ProtocolLimits.maxListItems`, each cut
    /// to `ProtocolLimits.maxTextBytes`.
    func decodeTextsIfPresent(_ key: Key) throws -> [String]? {
        try decodeCheckedIfPresent([String].self, key, "expected a list of at most \(ProtocolLimits.maxListItems) strings") {
            $0.count <= ProtocolLimits.maxListItems
        }.map { $0.map(ProtocolLimits.boundedText) }
    }

    func decodeCheckedIfPresent<T: Decodable>(
        _ type: T.Type, _ key: Key, _ expectation: String, check: (T) -> Bool = { _ in true }
    ) throws -> T? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        return try decodeChecked(type, key, expectation, check: check)
    }
}

/// `expected a string of at most 128 bytes`.
let nameExpectation = "expected a string of at most \(ProtocolLimits.maxNameBytes) bytes"
let namesExpectation = "expected a list of at most \(ProtocolLimits.maxListItems) strings of at most \(ProtocolLimits.maxNameBytes) bytes each"

/// `expected an integer 0–9007199254740992 (2^53)`.
let countExpectation = "expected an integer 0–\(ProtocolLimits.maxInteger) (2^53)"

/// `expected a number 0–86400` (no `.0` on whole bounds).
func numberExpectation(_ range: ClosedRange<Double>) -> String {
    "expected a number \(plainNumber(range.lowerBound))–\(plainNumber(range.upperBound))"
}

func plainNumber(_ value: Double) -> String {
    value.rounded() == value && abs(value) < 1e15 ? String(Int64(value)) : String(value)
}
