import Yams

/// Loads YAML text into Foundation values (`[String: Any]`, `[Any]`,
/// `String`, `Int`, `Double`, `Bool`, …) as `Yams.load(yaml:)` does, but
/// refuses what Yams would trap on instead of crashing the process.
///
/// Yams builds a dictionary from a mapping by force-unwrapping every key as
/// a string, so a key that is a sequence or a mapping (`{[a]: 1}`,
/// `? [a]\n: 1`, found by the fuzz target `fuzz-rollout`) stops the program
/// with "Unexpectedly found nil". Every configuration file, program and
/// rollout document of this project has plain string keys, so such a
/// document is an error that names the line.
public enum YAMLLoader {
    public static func load(yaml: String) throws(YAMLLoadError) -> Any? {
        let root: Node?
        do { root = try Yams.compose(yaml: yaml) } catch {
            throw YAMLLoadError(message: "\(error)")
        }
        guard let root else { return nil }
        try checkKeys(root)
        return root.any
    }

    /// Every mapping key, at every depth, must be a scalar. Merged mappings
    /// (`<<: *anchor`) are children of the node tree, so they are checked too.
    private static func checkKeys(_ node: Node) throws(YAMLLoadError) {
        switch node {
        case .scalar, .alias:
            return
        case .sequence(let sequence):
            for element in sequence { try checkKeys(element) }
        case .mapping(let mapping):
            for (key, value) in mapping {
                guard case .scalar = key else {
                    let kind = key.mapping != nil ? "a mapping" : "a sequence"
                    let line = key.mark.map { "line \($0.line): " } ?? ""
                    throw YAMLLoadError(message: "\(line)a key must be a plain value such as a name, got \(kind)")
                }
                try checkKeys(value)
            }
        }
    }
}

/// Why YAML text could not be loaded: not YAML, or a shape this project
/// never uses (see `YAMLLoader`).
public struct YAMLLoadError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}
