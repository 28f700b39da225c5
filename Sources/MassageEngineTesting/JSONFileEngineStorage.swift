import Foundation
import MassageEngine
import Synchronization

/// Storage in one JSON file, replaced atomically on every batch (write to a
/// temporary file, then rename). Tests use it to show that what the engine
/// persists survives a restart through a file (Codable round trip); no
/// program ships it (the agent keeps its state in SQLite).
public final class JSONFileEngineStorage: EngineStorage {
    public let fileURL: URL
    /// The last state written or read; nil until the first load.
    private let cache: Mutex<PersistedState?>

    public init(fileURL: URL) {
        self.fileURL = fileURL
        cache = Mutex(nil)
    }

    public func load() throws -> PersistedState {
        try cache.withLock { cached in
            let state = try readFile()
            cached = state
            return state
        }
    }

    public func apply(_ batch: PersistenceBatch) throws {
        try cache.withLock { cached in
            let current = try cached ?? readFile()
            let next = batch.applied(to: current)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.dateEncodingStrategy = .custom { date, encoder in
                var container = encoder.singleValueContainer()
                try container.encode(Self.formatter().string(from: date))
            }
            let data = try encoder.encode(next)
            try FileManager.default.createDirectory(at: fileURL.deletingLastPathComponent(), withIntermediateDirectories: true)
            try data.write(to: fileURL, options: .atomic)
            cached = next
        }
    }

    private func readFile() throws -> PersistedState {
        guard FileManager.default.fileExists(atPath: fileURL.path) else { return PersistedState() }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = Self.formatter().date(from: text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(text)' is not an RFC 3339 time")
            }
            return date
        }
        return try decoder.decode(PersistedState.self, from: Data(contentsOf: fileURL))
    }

    /// RFC 3339 with milliseconds, UTC.
    private static func formatter() -> ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }
}
