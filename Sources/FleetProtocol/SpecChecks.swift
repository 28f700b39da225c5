import Foundation
import MassageEngine

/// Structural checks of program documents (`ProgramSpec`, `StepSpec` from
/// MassageEngine) as they arrive in a command's `steps` or a desired
/// config's `programs`: JSON types, required fields, unknown keys and the
/// ranges the contract fixes (intensity 1–10, positive durations). Every
/// reason names its path.
///
/// Whether a target exists, suits its technique or fits the device's
/// ceilings is the engine's call (`ProgramValidator` in the agent and the
/// console), not this module's.
public enum SpecChecks {
    /// The keys a step object may have: the engine's own list.
    public static var stepKeys: Set<String> { StepSpec.documentKeys }

    /// The keys a program object may have: the engine's own list.
    public static var programKeys: Set<String> { ProgramSpec.documentKeys }

    /// After the field checks above pass, the spec is decoded with its own
    /// `Codable` conformance, so fields this module does not check (e.g. a
    /// program's `relaxation`) are still carried, and their type errors
    /// still reported.
    private static func decodeSpec<T: Decodable>(_ type: T.Type, _ raw: JSONValue, path: String) -> Result<T, Reasons> {
        do {
            return .success(try raw.decode(T.self))
        } catch let error as DecodingError {
            return .failure(Reasons([error.readableMessage(root: raw, prefix: path)]))
        } catch {
            return .failure(Reasons(["\(path): \(error)"]))
        }
    }

    /// One step: the decoded spec, or every reason it is refused.
    public static func step(_ raw: JSONValue, path: String) -> Result<StepSpec, Reasons> {
        guard let object = raw.objectValue else {
            return .failure(Reasons(["\(path): expected a step object, got \(raw.briefDescription)"]))
        }
        var reasons: [String] = unknown(object, known: stepKeys, path: path, what: "step")
        requireID(object, "target", path: path, what: "a zone or point id", into: &reasons)
        requireID(object, "technique", path: path, what: "a technique id", into: &reasons)
        requireInt(object, "intensity", path: path, range: 1...10, into: &reasons)
        requireInt(object, "duration_s", path: path, range: 1...Int(Int32.max),
                   expectation: "a positive whole number of seconds", into: &reasons)
        if let value = object["breathing_bpm"], !value.isNull, int(value, in: 1...60) == nil {
            reasons.append("\(path).breathing_bpm: expected an integer 1–60 (breaths per minute), got \(value.briefDescription)")
        }
        return reasons.isEmpty ? decodeSpec(StepSpec.self, raw, path: path) : .failure(Reasons(reasons))
    }

    /// A list of steps (1…`ProtocolLimits.maxSteps`): every step's reasons.
    public static func steps(_ raw: JSONValue, path: String) -> Result<[StepSpec], Reasons> {
        guard let items = raw.arrayValue else {
            return .failure(Reasons(["\(path): expected an array of steps, got \(raw.briefDescription)"]))
        }
        if items.isEmpty { return .failure(Reasons(["\(path): expected at least one step, got an empty array"])) }
        if items.count > ProtocolLimits.maxSteps {
            return .failure(Reasons(["\(path): \(items.count) steps; the limit is \(ProtocolLimits.maxSteps)"]))
        }
        var specs: [StepSpec] = []
        var reasons: [String] = []
        for (index, item) in items.enumerated() {
            switch step(item, path: "\(path)[\(index)]") {
            case .success(let spec): specs.append(spec)
            case .failure(let r): reasons += r.reasons
            }
        }
        return reasons.isEmpty ? .success(specs) : .failure(Reasons(reasons))
    }

    /// One program: the decoded spec, or every reason it is refused.
    public static func program(_ raw: JSONValue, path: String) -> Result<ProgramSpec, Reasons> {
        guard let object = raw.objectValue else {
            return .failure(Reasons(["\(path): expected a program object, got \(raw.briefDescription)"]))
        }
        var reasons: [String] = unknown(object, known: programKeys, path: path, what: "program")
        requireID(object, "id", path: path, what: "a program id", into: &reasons)
        switch object["name"] {
        case nil: reasons.append("\(path): missing field \"name\"")
        case .string(let s) where !s.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty: break
        case let other?: reasons.append("\(path).name: expected a non-empty string, got \(other.briefDescription)")
        }
        if let value = object["description"], !value.isNull, value.stringValue == nil {
            reasons.append("\(path).description: expected a string, got \(value.briefDescription)")
        }
        if let steps = object["steps"] {
            if case .failure(let r) = Self.steps(steps, path: "\(path).steps") { reasons += r.reasons }
        } else {
            reasons.append("\(path): missing field \"steps\"")
        }
        return reasons.isEmpty ? decodeSpec(ProgramSpec.self, raw, path: path) : .failure(Reasons(reasons))
    }

    /// Reasons, each naming its path.
    public struct Reasons: Error, Sendable, Equatable {
        public var reasons: [String]
        public init(_ reasons: [String]) { self.reasons = reasons }
    }

    // MARK: helpers

    static func unknown(_ object: [String: JSONValue], known: Set<String>, path: String, what: String) -> [String] {
        object.keys.filter { !known.contains($0) }.sorted().map {
            "\(path).\($0): unknown key; a \(what) has \(known.sorted().joined(separator: ", "))"
        }
    }

    private static func requireID(_ object: [String: JSONValue], _ key: String, path: String, what: String,
                                  into reasons: inout [String])
    {
        guard let value = object[key] else {
            reasons.append("\(path): missing field \(quoted(key))")
            return
        }
        if !(value.stringValue.map(Identifier.isValid) ?? false) {
            reasons.append("\(path).\(key): expected \(what) matching \(Identifier.rule), got \(value.briefDescription)")
        }
    }

    private static func requireInt(_ object: [String: JSONValue], _ key: String, path: String,
                                   range: ClosedRange<Int>, expectation: String? = nil,
                                   into reasons: inout [String])
    {
        guard let value = object[key] else {
            reasons.append("\(path): missing field \(quoted(key))")
            return
        }
        if int(value, in: range) == nil {
            let expected = expectation ?? "an integer \(range.lowerBound)–\(range.upperBound)"
            reasons.append("\(path).\(key): expected \(expected), got \(value.briefDescription)")
        }
    }

    static func int(_ value: JSONValue, in range: ClosedRange<Int>) -> Int? {
        guard let v = value.intValue, range.contains(v) else { return nil }
        return v
    }
}
