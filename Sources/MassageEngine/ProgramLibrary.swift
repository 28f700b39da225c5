import Foundation
import Yams

/// The programs a device can run, by id. Loaded from a directory of YAML
/// files (`Config/programs/<id>.yaml`), each validated; configuration may
/// add or replace programs.
public struct ProgramLibrary: Sendable, Equatable {
    public private(set) var programs: [String: Program]

    public init(_ programs: [Program] = []) {
        self.programs = Dictionary(programs.map { ($0.id, $0) }, uniquingKeysWith: { _, last in last })
    }

    /// Program ids, sorted: what the agent advertises as `programs`.
    public var ids: [String] { programs.keys.sorted() }

    public subscript(id: String) -> Program? { programs[id] }

    /// The program with `id`, or an `invalid_params` error listing the known ids.
    public func program(_ id: String) throws(EngineError) -> Program {
        guard let program = programs[id] else {
            let known = ids.isEmpty ? "none loaded" : ids.joined(separator: ", ")
            throw EngineError(.invalidParams, "program \"\(id)\" not found; known: \(known)")
        }
        return program
    }

    /// Adds or replaces programs after validating each against `limits`.
    /// Refuses the whole set if any is invalid.
    public func adding(_ specs: [ProgramSpec], limits: EngineLimits = .default) throws(ProgramLibraryError) -> ProgramLibrary {
        var copy = self
        var failures: [ProgramLibraryError.Failure] = []
        for spec in specs {
            do {
                let program = try ProgramValidator.validate(spec, limits: limits)
                copy.programs[program.id] = program
            } catch {
                failures.append(.init(source: "program \"\(spec.id)\"", messages: error.issues.map(\.description)))
            }
        }
        if !failures.isEmpty { throw ProgramLibraryError(failures: failures) }
        return copy
    }

    /// Validates every program again against new limits (e.g. a lowered
    /// ceiling); lists every program that would no longer be valid.
    public func revalidated(limits: EngineLimits) throws(ProgramLibraryError) -> ProgramLibrary {
        try ProgramLibrary().adding(ids.compactMap { programs[$0]?.spec }, limits: limits)
    }

    // MARK: - Loading YAML

    /// Loads every `*.yaml` / `*.yml` file of `directory`. Each file holds
    /// one program whose id matches the file name. Reports every problem of
    /// every file, each naming the file.
    public static func load(directory: URL, limits: EngineLimits = .default) throws(ProgramLibraryError) -> ProgramLibrary {
        let fm = FileManager.default
        let names: [String]
        do {
            names = try fm.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw ProgramLibraryError(failures: [.init(source: directory.path, messages: ["cannot list the directory: \(error.localizedDescription)"])])
        }
        var library = ProgramLibrary()
        var failures: [ProgramLibraryError.Failure] = []
        var sources: [String: String] = [:]
        for name in names.sorted() where name.hasSuffix(".yaml") || name.hasSuffix(".yml") {
            let url = directory.appendingPathComponent(name)
            do {
                let text = try String(contentsOf: url, encoding: .utf8)
                let program = try parse(yaml: text, limits: limits)
                let stem = name.replacingOccurrences(of: ".yaml", with: "").replacingOccurrences(of: ".yml", with: "")
                if program.id != stem {
                    failures.append(.init(source: name, messages: ["id \"\(program.id)\" does not match the file name; name the file \(program.id).yaml"]))
                } else if let other = sources[program.id] {
                    failures.append(.init(source: name, messages: ["id \"\(program.id)\" is already defined by \(other)"]))
                } else {
                    sources[program.id] = name
                    library.programs[program.id] = program
                }
            } catch let error as ProgramDocumentError {
                failures.append(.init(source: name, messages: error.messages))
            } catch {
                failures.append(.init(source: name, messages: ["cannot read: \(error.localizedDescription)"]))
            }
        }
        if !failures.isEmpty { throw ProgramLibraryError(failures: failures) }
        return library
    }

    /// Parses and validates one YAML program document. Unknown keys are
    /// refused (a misspelt `breathing_bmp` must not be silently ignored).
    public static func parse(yaml: String, limits: EngineLimits = .default) throws(ProgramDocumentError) -> Program {
        let node: Node
        do {
            guard let root = try Yams.compose(yaml: yaml) else {
                throw ProgramDocumentError(messages: ["the file is empty"])
            }
            node = root
        } catch let error as ProgramDocumentError {
            throw error
        } catch {
            throw ProgramDocumentError(messages: ["not valid YAML: \(error)"])
        }

        var messages: [String] = []
        guard let mapping = node.mapping else {
            throw ProgramDocumentError(messages: ["the document must be a mapping with keys \(ProgramSpec.documentKeys.sorted().joined(separator: ", "))"])
        }
        for key in mapping.keys.compactMap(\.string) where !ProgramSpec.documentKeys.contains(key) {
            messages.append("unknown key '\(key)'; known: \(ProgramSpec.documentKeys.sorted().joined(separator: ", "))")
        }
        if let steps = mapping["steps"]?.sequence {
            for (index, step) in steps.enumerated() {
                guard let stepMapping = step.mapping else {
                    messages.append("step \(index): must be a mapping")
                    continue
                }
                for key in stepMapping.keys.compactMap(\.string) where !StepSpec.documentKeys.contains(key) {
                    messages.append("step \(index): unknown key '\(key)'; known: \(StepSpec.documentKeys.sorted().joined(separator: ", "))")
                }
            }
        }

        let spec: ProgramSpec
        do {
            spec = try YAMLDecoder().decode(ProgramSpec.self, from: node)
        } catch let error as DecodingError {
            throw ProgramDocumentError(messages: messages + [describe(error)])
        } catch {
            throw ProgramDocumentError(messages: messages + ["cannot decode: \(error)"])
        }
        do {
            let program = try ProgramValidator.validate(spec, limits: limits)
            if !messages.isEmpty { throw ProgramDocumentError(messages: messages) }
            return program
        } catch let error as ProgramValidationError {
            throw ProgramDocumentError(messages: messages + error.issues.map(\.description))
        } catch let error as ProgramDocumentError {
            throw error
        } catch {
            throw ProgramDocumentError(messages: messages + ["\(error)"])
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map { "step \($0)" } ?? $0.stringValue }.joined(separator: " ")
        }
        switch error {
        case .keyNotFound(let key, let context):
            let where_ = path(context)
            return (where_.isEmpty ? "" : "\(where_): ") + "missing key '\(key.stringValue)'"
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            return "\(path(context)): expected \(type)"
        case .dataCorrupted(let context):
            return "\(path(context)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}

/// What was wrong with one program document.
public struct ProgramDocumentError: Error, Sendable, Equatable, CustomStringConvertible {
    public var messages: [String]
    public var description: String { messages.joined(separator: "; ") }
}

/// Programs refused while loading or adding, each failure naming its file
/// (or program) and listing every reason.
public struct ProgramLibraryError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Failure: Sendable, Equatable, CustomStringConvertible {
        /// The file name (`calf-release.yaml`) or `program "id"`.
        public var source: String
        public var messages: [String]
        public var description: String { "\(source): " + messages.joined(separator: "; ") }
    }

    public var failures: [Failure]
    public var description: String { failures.map(\.description).joined(separator: "\n") }
}
