import Foundation

/// Sizes the protocol refuses to go beyond. A message over a limit is
/// refused with a message naming the limit; it is never parsed.
public enum ProtocolLimits {
    /// Largest payload accepted on any topic: 256 KiB.
    public static let maxPayloadBytes = 256 * 1024
    /// Deepest nesting of arrays and objects accepted in a payload.
    public static let maxNestingDepth = 32
    /// Longest command id (and schedule id), in UTF-8 bytes.
    public static let maxIDBytes = 128
    /// Most steps in a custom session or a program.
    public static let maxSteps = 100
    /// Most programs in one desired config.
    public static let maxPrograms = 200

    // Numbers a device sends (docs/protocol.md, "Limits"). Each is checked
    // when a message is decoded, so nothing past here ever sees a number
    // that overflows when it is added to, converted or shown.

    /// Largest integer an agent message may carry (2^53): `epoch`, `seq`,
    /// versions and usage counters. Exact in a JSON reader that uses doubles,
    /// and far enough below `UInt64.max` that the console's sums of them
    /// saturate instead of wrapping.
    public static let maxInteger: UInt64 = 1 << 53
    /// `pressure_mmhg` values: what a pressure sensor can physically read
    /// (the engine's ceilings are at most 180 mmHg; a faulty sensor may read
    /// more, and its telemetry must still be accepted to show the fault).
    public static let pressureMMHg: ClosedRange<Double> = -1_000...10_000
    /// `motor_temp_c`: from absolute zero to far past any motor's limit.
    public static let motorTemperatureC: ClosedRange<Double> = -273.15...1_000
    /// `elapsed_s`, `remaining_s`, `duration_s`: a session is at most 30
    /// minutes long (the engine's hard limit); a day is generous.
    public static let sessionSeconds: ClosedRange<Double> = 0...86_400
    /// `interval_s` of telemetry: positive, at most a day.
    public static let telemetryIntervalSeconds: ClosedRange<Double> = 0.001...86_400
    /// `intensity`, everywhere.
    public static let intensity: ClosedRange<Int> = 1...10
    /// `breathing_bpm`.
    public static let breathingBPM: ClosedRange<Int> = 1...60
    /// `step.index` of telemetry and `step_index` of `session_step` (0-based).
    public static let stepIndex: ClosedRange<Int> = 0...(maxSteps - 1)
    /// `step_count` of `session_step`.
    public static let stepCount: ClosedRange<Int> = 1...maxSteps

    // Strings a device sends (docs/protocol.md, "Limits"): a device cannot
    // make the console keep, store or show more text than these, whatever
    // fits in a payload.

    /// Longest name: an id, a program, a zone, a fault, a vocabulary value,
    /// a map key (UTF-8 bytes). A longer one makes the message malformed.
    public static let maxNameBytes = 128
    /// Longest free text: a message, a reason (UTF-8 bytes). A longer one is
    /// cut there, ending in `…`: the start of an explanation is worth keeping.
    public static let maxTextBytes = 4096
    /// Most items in a list or entries in a map of a device's message.
    public static let maxListItems = 1000

    /// `text` cut to at most `maxTextBytes` UTF-8 bytes at a character
    /// boundary, ending in `…` when it was cut.
    public static func boundedText(_ text: String) -> String {
        guard text.utf8.count > maxTextBytes else { return text }
        let ellipsis = "…"
        var kept = Substring(text.unicodeScalars.prefix(maxTextBytes))
        while kept.utf8.count + ellipsis.utf8.count > maxTextBytes { kept = kept.dropLast() }
        return kept + ellipsis
    }
}

/// The one JSON configuration agent and console share, so both encode the
/// same bytes: dates as RFC 3339 UTC with milliseconds, slashes unescaped,
/// keys optionally sorted.
public enum FleetJSON {
    public static func makeEncoder(sortedKeys: Bool = false) -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = sortedKeys ? [.sortedKeys, .withoutEscapingSlashes] : [.withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(RFC3339.string(from: date))
        }
        encoder.nonConformingFloatEncodingStrategy = .throw
        return encoder
    }

    public static func makeDecoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let string = try container.decode(String.self)
            guard let date = RFC3339.date(from: string) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: RFC3339.expectation)
            }
            return date
        }
        return decoder
    }

    /// One decoder for the hot paths (ingest decodes every message with it).
    /// JSONDecoder is Sendable and its options are fixed here, so concurrent
    /// decodes with it are safe.
    static let sharedDecoder = makeDecoder()
    /// The same for encoding (every agent message and command reply): made
    /// once, not per message. JSONEncoder is Sendable; options fixed here.
    static let sharedEncoder = makeEncoder()
    static let sharedSortedEncoder = makeEncoder(sortedKeys: true)

    /// Encodes `value` with the shared configuration.
    public static func encode<T: Encodable>(_ value: T, sortedKeys: Bool = false) throws -> Data {
        try (sortedKeys ? sharedSortedEncoder : sharedEncoder).encode(value)
    }

    /// Decodes untrusted bytes into `T`. Never traps: size, UTF-8 and nesting
    /// are checked first, and every failure becomes a `ProtocolError`
    /// (`bad_request`) whose message names the field and what was expected.
    public static func decode<T: Decodable, Bytes: Collection<UInt8>>(
        _ type: T.Type, from bytes: Bytes, maxBytes: Int = ProtocolLimits.maxPayloadBytes
    ) -> Result<T, ProtocolError> {
        let data: Data
        switch preflight(bytes, maxBytes: maxBytes) {
        case .failure(let error): return .failure(error)
        case .success(let checked): data = checked
        }
        do {
            return .success(try sharedDecoder.decode(T.self, from: data))
        } catch let error as DecodingError {
            // Parse again as plain JSON only to say what was found where.
            guard let root = try? makeDecoder().decode(JSONValue.self, from: data) else {
                return .failure(.badRequest("not valid JSON" + syntaxDetail(data)))
            }
            return .failure(.badRequest(error.readableMessage(root: root)))
        } catch let error as ProtocolError {
            return .failure(error)
        } catch {
            return .failure(.badRequest("\(error)"))
        }
    }

    /// Parses untrusted bytes into a `JSONValue` (see `decode`).
    public static func parse<Bytes: Collection<UInt8>>(
        _ bytes: Bytes, maxBytes: Int = ProtocolLimits.maxPayloadBytes
    ) -> Result<JSONValue, ProtocolError> {
        decode(JSONValue.self, from: bytes, maxBytes: maxBytes)
    }

    /// Where the JSON syntax breaks, in Foundation's words (" (Unexpected
    /// character 's' around line 1, column 1.)"), or "".
    private static func syntaxDetail(_ data: Data) -> String {
        do {
            _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch let error as NSError {
            if let reason = error.userInfo[NSDebugDescriptionErrorKey] as? String, !reason.isEmpty {
                return " (\(reason))"
            }
        }
        return ""
    }

    /// The checks made before any parser sees the bytes.
    static func preflight<Bytes: Collection<UInt8>>(_ bytes: Bytes, maxBytes: Int) -> Result<Data, ProtocolError> {
        let count = bytes.count
        if count == 0 { return .failure(.badRequest("empty payload: expected a JSON object")) }
        if count > maxBytes {
            return .failure(.badRequest("payload is \(count) bytes; the limit is \(maxBytes) bytes (\(maxBytes / 1024) KiB)"))
        }
        let data = Data(bytes)
        if String(validating: data, as: UTF8.self) == nil {
            return .failure(.badRequest("payload is not UTF-8 text: expected a JSON object"))
        }
        if nestingExceeds(data, limit: ProtocolLimits.maxNestingDepth) {
            return .failure(.badRequest(
                "payload nests arrays and objects more than \(ProtocolLimits.maxNestingDepth) levels deep; that is the limit"))
        }
        return .success(data)
    }

    /// Whether `[` and `{` outside strings nest deeper than `limit`.
    private static func nestingExceeds(_ data: Data, limit: Int) -> Bool {
        data.withUnsafeBytes { nestingExceeds($0, limit: limit) }
    }

    private static func nestingExceeds(_ bytes: UnsafeRawBufferPointer, limit: Int) -> Bool {
        var depth = 0, inString = false, escaped = false
        for byte in bytes {
            if inString {
                if escaped { escaped = false }
                else if byte == UInt8(ascii: "\\") { escaped = true }
                else if byte == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth > limit { return true }
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
            default: break
            }
        }
        return false
    }
}
