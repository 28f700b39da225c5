import Foundation

/// `{root}/{site}/{device}/cmd` (console → agent, QoS 1, not retained):
/// `{ "id", "action", "params"?, "expires_at"?, "reply_to"? }`, published
/// with the MQTT 5 Response Topic and Correlation Data properties.
public struct Command: Codable, Sendable, Equatable {
    /// Unique per command (per device): non-empty, at most 128 bytes.
    /// A repeated id gets the first reply again and runs nothing.
    public var id: String
    public var action: Action
    /// Always an object (`{}` when absent).
    public var params: JSONValue
    /// After this instant the agent replies `expired` and does nothing.
    public var expiresAt: Date?
    /// Where to reply for clients without MQTT 5 (the Response Topic wins when both are set).
    public var replyTo: String?

    public static let fields = ["id", "action", "params", "expires_at", "reply_to"]

    public init(id: String, action: Action, params: JSONValue = .object([:]), expiresAt: Date? = nil,
                replyTo: String? = nil)
    {
        self.id = id
        self.action = action
        self.params = params
        self.expiresAt = expiresAt.map(RFC3339.normalized)
        self.replyTo = replyTo
    }

    public init(id: String, request: CommandRequest, expiresAt: Date? = nil, replyTo: String? = nil) {
        self.init(id: id, action: request.action, params: request.params, expiresAt: expiresAt, replyTo: replyTo)
    }

    /// The typed action and params (see `CommandRequest.init(action:params:)`).
    public func request() throws(ProtocolError) -> CommandRequest {
        try CommandRequest(action: action, params: params)
    }

    public func isExpired(now: Date) -> Bool {
        guard let expiresAt else { return false }
        return expiresAt <= now
    }

    /// Actions that put pressure on a person: a device refuses them without
    /// `expires_at`, or with one further ahead than it allows, so a command
    /// cannot wait for a massager that comes back hours later with someone
    /// else seated.
    public static let startingActions: Set<Action> = [.startSession, .scheduleSession]

    /// For a starting action: why its `expires_at` is refused (missing, or
    /// more than `maxTTL` seconds after `now`), else nil.
    public func startWindowError(now: Date, maxTTL: TimeInterval) -> ProtocolError? {
        guard Self.startingActions.contains(action) else { return nil }
        guard let expiresAt else {
            return .badRequest("expires_at: required for \(action) (a start must not wait for a device that comes back later); give a time at most \(Int(maxTTL)) s ahead")
        }
        let ahead = expiresAt.timeIntervalSince(now)
        if ahead > maxTTL {
            return .invalidParams("expires_at: \(RFC3339.string(from: expiresAt)) is \(Int(ahead.rounded())) s ahead; \(action) may wait at most \(Int(maxTTL)) s for this device")
        }
        return nil
    }

    /// `expired` when `expires_at` is not after `now`, else nil.
    public func expiryError(now: Date) -> ProtocolError? {
        guard let expiresAt, isExpired(now: now) else { return nil }
        return .expired(expiresAt: expiresAt, now: now)
    }

    public static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= ProtocolLimits.maxIDBytes
    }

    enum CodingKeys: String, CodingKey {
        case id, action, params
        case expiresAt = "expires_at"
        case replyTo = "reply_to"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(action, forKey: .action)
        try c.encode(params, forKey: .params)
        try c.encodeRFC3339IfPresent(expiresAt, forKey: .expiresAt)
        try c.encodeIfPresent(replyTo, forKey: .replyTo)
    }

    /// Decodes with the same rules as `decodeCommand` (the params are kept
    /// as JSON; `request()` checks them). Errors are `CommandRejection`s.
    public init(from decoder: any Decoder) throws {
        let value = try JSONValue(from: decoder)
        self = try Command.validate(value).get()
    }

    /// The envelope-level checks of a command: object, known fields, `id`,
    /// `action` (known), `expires_at`, `reply_to`, `params` an object.
    static func validate(_ value: JSONValue) -> Result<Command, CommandRejection> {
        guard let object = value.objectValue else {
            return .failure(CommandRejection(.badRequest("expected a JSON object, got \(value.briefDescription)")))
        }
        // Salvage what a reply needs before anything can fail.
        let salvagedID = object["id"]?.stringValue.flatMap { isValidID($0) ? $0 : nil }
        let salvagedReplyTo = object["reply_to"]?.stringValue.flatMap { TopicRoot.isValidPublishTopic($0) ? $0 : nil }
        func reject(_ error: ProtocolError) -> Result<Command, CommandRejection> {
            .failure(CommandRejection(error, id: salvagedID, replyTo: salvagedReplyTo))
        }

        guard let rawID = object["id"] else { return reject(.badRequest("missing field \"id\"")) }
        guard let id = rawID.stringValue, isValidID(id) else {
            return reject(.badRequest(
                "id: expected a non-empty string of at most \(ProtocolLimits.maxIDBytes) bytes, got \(rawID.briefDescription)"))
        }
        if let extra = object.keys.filter({ !fields.contains($0) }).sorted().first {
            return reject(.badRequest("unknown field \(quoted(extra)); a command has \(fields.joined(separator: ", "))"))
        }
        guard let rawAction = object["action"] else { return reject(.badRequest("missing field \"action\"")) }
        guard let actionName = rawAction.stringValue else {
            return reject(.badRequest("action: expected a string, got \(rawAction.briefDescription)"))
        }
        let action = Action(rawValue: actionName)
        guard action.isKnown else { return reject(.unknownAction(actionName)) }

        var expiresAt: Date?
        if let raw = object["expires_at"], !raw.isNull {
            guard let string = raw.stringValue, let date = RFC3339.date(from: string) else {
                return reject(.badRequest("expires_at: \(RFC3339.expectation), got \(raw.briefDescription)"))
            }
            expiresAt = date
        }
        var replyTo: String?
        if let raw = object["reply_to"], !raw.isNull {
            guard let topic = raw.stringValue, TopicRoot.isValidPublishTopic(topic) else {
                return reject(.badRequest(
                    "reply_to: expected a topic to publish to (no '+', '#', NUL or leading '$'), got \(raw.briefDescription)"))
            }
            replyTo = topic
        }
        let params = object["params"] ?? .object([:])
        switch params {
        case .object: break
        case .null: return .success(Command(id: id, action: action, params: .object([:]), expiresAt: expiresAt, replyTo: replyTo))
        default: return reject(.invalidParams("params: expected an object, got \(params.briefDescription)"))
        }
        return .success(Command(id: id, action: action, params: params, expiresAt: expiresAt, replyTo: replyTo))
    }
}

/// A command that decoded, with its typed request.
public struct IncomingCommand: Sendable, Equatable {
    public var command: Command
    public var request: CommandRequest
}

/// A command that could not be decoded: the error to reply with and
/// whatever could be salvaged to address the reply.
public struct CommandRejection: Error, Sendable, Equatable, CustomStringConvertible {
    public var error: ProtocolError
    /// The command's `id` when it was a valid id, so the reply can carry it.
    public var id: String?
    /// The command's `reply_to` when it was a valid topic.
    public var replyTo: String?

    public init(_ error: ProtocolError, id: String? = nil, replyTo: String? = nil) {
        self.error = error
        self.id = id
        self.replyTo = replyTo
    }

    /// The reply to send (to the Response Topic, else `replyTo`).
    public var reply: CommandReply { .failure(id: id, error: error) }

    public var description: String { "\(error) (id: \(id.map { quoted($0) } ?? "none"))" }
}

/// Decodes a command payload exactly as the agent must: never traps on any
/// input (not UTF-8, not JSON, binary, huge, deeply nested, wrong types) and
/// returns either the command with its typed request, or the error to reply
/// with plus the `id` (and `reply_to`) it could salvage.
///
/// Payloads over `ProtocolLimits.maxPayloadBytes` (256 KiB) are refused
/// unparsed (`bad_request` naming the limit; no id is salvaged). It does not
/// check expiry or repeated ids: the agent does that with its clock and its
/// id store (`Command.expiryError(now:)`).
public func decodeCommand<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> Result<IncomingCommand, CommandRejection> {
    let data: Data
    switch FleetJSON.preflight(bytes, maxBytes: ProtocolLimits.maxPayloadBytes) {
    case .failure(let error): return .failure(CommandRejection(error))
    case .success(let checked): data = checked
    }
    let command: Command
    if let wellFormed = try? FleetJSON.sharedDecoder.decode(WellFormedCommand.self, from: data) {
        command = wellFormed.command
    } else {
        switch validatedCommand(data) {
        case .failure(let rejection): return .failure(rejection)
        case .success(let c): command = c
        }
    }
    do {
        return .success(IncomingCommand(command: command, request: try command.request()))
    } catch {
        return .failure(CommandRejection(error, id: command.id, replyTo: command.replyTo))
    }
}

/// The envelope through the free-form tree and `Command.validate`: every
/// rule checked in turn, so a refusal names what was wrong.
func validatedCommand<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> Result<Command, CommandRejection> {
    switch FleetJSON.parse(bytes) {
    case .failure(let error): return .failure(CommandRejection(error))
    case .success(let value): return Command.validate(value)
    }
}

/// The common case, a well-formed envelope, read straight from the JSON
/// into its fields. It accepts exactly what `Command.validate` accepts and
/// builds the same `Command`; anything else throws, and `decodeCommand`
/// asks `validatedCommand` for the precise refusal. The free-form tree
/// costs a `Decoder` per member and a thrown miss per kind tried; with
/// strings tried first it was still about an eighth of the agent's CPU per
/// ping (`perf`, docs/BENCHMARKS.md).
struct WellFormedCommand: Decodable {
    let command: Command

    struct Key: CodingKey {
        let stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
        static let id = Key(stringValue: "id"), action = Key(stringValue: "action"), params = Key(stringValue: "params")
        static let expiresAt = Key(stringValue: "expires_at"), replyTo = Key(stringValue: "reply_to")
    }

    struct NotWellFormed: Error {}

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        guard c.allKeys.allSatisfy({ Command.fields.contains($0.stringValue) }) else { throw NotWellFormed() }
        let id = try c.decode(String.self, forKey: .id)
        let action = Action(rawValue: try c.decode(String.self, forKey: .action))
        guard Command.isValidID(id), action.isKnown else { throw NotWellFormed() }
        var expiresAt: Date?
        if let raw = try c.decodeIfPresent(String.self, forKey: .expiresAt) {
            guard let date = RFC3339.date(from: raw) else { throw NotWellFormed() }
            expiresAt = date
        }
        let replyTo = try c.decodeIfPresent(String.self, forKey: .replyTo)
        if let replyTo, !TopicRoot.isValidPublishTopic(replyTo) { throw NotWellFormed() }
        let params = try c.decodeIfPresent([String: JSONValue].self, forKey: .params) ?? [:]
        command = Command(id: id, action: action, params: .object(params), expiresAt: expiresAt, replyTo: replyTo)
    }
}

/// A reply as the agent writes it: the same JSON as `CommandReply`, encoded
/// straight from the typed result (`PingResult`, `StartSessionResult`, …)
/// instead of through a `JSONValue` tree first (an encode and a decode per
/// command). Consoles read it as a `CommandReply`.
public struct OutgoingReply: Encodable, Sendable {
    public enum Outcome: Sendable {
        case success(any Encodable & Sendable)
        case failure(ProtocolError)
    }

    public var id: String?
    public var outcome: Outcome

    public static func success(id: String?, result: any Encodable & Sendable) -> OutgoingReply {
        .init(id: id, outcome: .success(result))
    }

    public static func failure(id: String?, error: ProtocolError) -> OutgoingReply {
        .init(id: id, outcome: .failure(error))
    }

    /// The error of a failure, nil for a success (for logging).
    public var failure: ProtocolError? {
        if case .failure(let e) = outcome { return e }
        return nil
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CommandReply.CodingKeys.self)
        if let id { try c.encode(id, forKey: .id) } else { try c.encodeNil(forKey: .id) }
        switch outcome {
        case .success(let result):
            try c.encode(true, forKey: .ok)
            try c.encode(result, forKey: .result)
        case .failure(let error):
            try c.encode(false, forKey: .ok)
            try c.encode(error, forKey: .error)
        }
    }
}

/// A command reply, to the command's Response Topic with its Correlation
/// Data (or to `reply_to`): `{ "id", "ok": true, "result": {…} }` or
/// `{ "id", "ok": false, "error": { "code", "message" } }`. `id` is null
/// only when the command's id could not be read.
public struct CommandReply: Codable, Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        case success(JSONValue)
        case failure(ProtocolError)
    }

    public var id: String?
    public var outcome: Outcome

    public init(id: String?, outcome: Outcome) {
        self.id = id
        self.outcome = outcome
    }

    public static func success(id: String?, result: JSONValue = .object([:])) -> CommandReply {
        .init(id: id, outcome: .success(result))
    }

    /// A success whose result is `result` encoded (e.g. a `StartSessionResult`).
    public static func success<R: Encodable>(id: String?, encoding result: R) throws -> CommandReply {
        .init(id: id, outcome: .success(try JSONValue(encoding: result)))
    }

    public static func failure(id: String?, error: ProtocolError) -> CommandReply {
        .init(id: id, outcome: .failure(error))
    }

    public var ok: Bool {
        if case .success = outcome { return true }
        return false
    }

    public var result: JSONValue? {
        if case .success(let r) = outcome { return r }
        return nil
    }

    public var error: ProtocolError? {
        if case .failure(let e) = outcome { return e }
        return nil
    }

    /// The result decoded as `R`, or the reply's error.
    public func decodeResult<R: Decodable>(_ type: R.Type) throws -> R {
        switch outcome {
        case .failure(let error): throw error
        case .success(let value): return try value.decode(R.self)
        }
    }

    enum CodingKeys: String, CodingKey { case id, ok, result, error }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decodeCheckedIfPresent(String.self, .id, "expected a string of at most \(ProtocolLimits.maxIDBytes) bytes") {
            $0.utf8.count <= ProtocolLimits.maxIDBytes
        }
        if try c.decode(Bool.self, forKey: .ok) {
            outcome = .success(try c.decodeIfPresent(JSONValue.self, forKey: .result) ?? .object([:]))
        } else {
            outcome = .failure(try c.decode(ProtocolError.self, forKey: .error))
        }
    }

    /// Written as `OutgoingReply` writes it: one encoding of a reply.
    public func encode(to encoder: any Encoder) throws {
        switch outcome {
        case .success(let result): try OutgoingReply.success(id: id, result: result).encode(to: encoder)
        case .failure(let error): try OutgoingReply.failure(id: id, error: error).encode(to: encoder)
        }
    }
}
