import Foundation

/// What every agent message carries (DESIGN.md §3): `ts` (RFC 3339 UTC with
/// milliseconds), `epoch` (increments on every agent start, persisted),
/// `seq` (increments per message of one topic within an epoch, from 1) and
/// `historical: true` on messages replayed from the outbox after an outage.
/// The console keys stored messages by `(device, epoch, seq)`.
public struct Envelope: Codable, Sendable, Equatable, Hashable {
    /// When the message was produced (not when it was sent), at millisecond precision.
    public var ts: Date
    public var epoch: UInt64
    public var seq: UInt64
    /// Replayed from the outbox after an outage. Encoded only when true.
    public var historical: Bool

    public init(ts: Date, epoch: UInt64, seq: UInt64, historical: Bool = false) {
        self.ts = RFC3339.normalized(ts)
        self.epoch = epoch
        self.seq = seq
        self.historical = historical
    }

    /// The keys the envelope owns in every agent payload; message bodies never use them.
    public static let keys: Set<String> = ["ts", "epoch", "seq", "historical"]

    enum CodingKeys: String, EnvelopeCodingKey { case ts, epoch, seq, historical }

    public init(from decoder: any Decoder) throws {
        try self.init(from: decoder.container(keyedBy: CodingKeys.self))
    }

    /// Reads the envelope's keys from a container of the whole message
    /// (see `AgentMessage.decodeWithEnvelope`).
    public init<Key: EnvelopeCodingKey>(from c: KeyedDecodingContainer<Key>) throws {
        ts = try c.decodeRFC3339(forKey: .ts)
        epoch = try c.decodeCount(.epoch)
        seq = try c.decodeCount(.seq)
        historical = try c.decodeCheckedIfPresent(Bool.self, .historical, "expected true or false") ?? false
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeRFC3339(ts, forKey: .ts)
        try c.encode(epoch, forKey: .epoch)
        try c.encode(seq, forKey: .seq)
        if historical { try c.encode(true, forKey: .historical) }
    }

    /// The same message marked as replayed from the outbox.
    public func asHistorical() -> Envelope {
        var copy = self
        copy.historical = true
        return copy
    }
}

/// Coding keys that name the envelope's fields too, so that a message body
/// and its envelope can be read from one keyed container.
public protocol EnvelopeCodingKey: CodingKey {
    static var ts: Self { get }
    static var epoch: Self { get }
    static var seq: Self { get }
    static var historical: Self { get }
}

/// The body of an agent message: the payload without the envelope, and the
/// topic it goes to.
public protocol AgentMessage: Codable, Sendable, Equatable {
    static var topicKind: DeviceTopicKind { get }

    /// The body and the envelope of one message. By default each opens its
    /// own keyed container on the same object; a body whose keys include
    /// the envelope's (`EnvelopeCodingKey`) reads both from one (`Event`
    /// does: the console decodes every event, and with JSONDecoder each
    /// container indexes every key of the object again).
    static func decodeWithEnvelope(from decoder: any Decoder) throws -> (Self, Envelope)
}

extension AgentMessage {
    public static func decodeWithEnvelope(from decoder: any Decoder) throws -> (Self, Envelope) {
        (try Self(from: decoder), try Envelope(from: decoder))
    }
}

/// An agent message on the wire: the body's fields and the envelope's
/// fields in one flat JSON object. Body fields are readable directly
/// (`message.state`) through dynamic member lookup.
@dynamicMemberLookup
public struct Stamped<Body: AgentMessage>: Codable, Sendable, Equatable {
    public var envelope: Envelope
    public var body: Body

    public init(_ body: Body, envelope: Envelope) {
        self.body = body
        self.envelope = envelope
    }

    public subscript<T>(dynamicMember keyPath: KeyPath<Body, T>) -> T { body[keyPath: keyPath] }

    public static var topicKind: DeviceTopicKind { Body.topicKind }

    public init(from decoder: any Decoder) throws {
        (body, envelope) = try Body.decodeWithEnvelope(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        try body.encode(to: encoder)
        try envelope.encode(to: encoder)
    }
}

public typealias StatusMessage = Stamped<Status>
public typealias TelemetryMessage = Stamped<Telemetry>
public typealias EventMessage = Stamped<Event>
public typealias UsageMessage = Stamped<Usage>
public typealias ReportedConfigMessage = Stamped<ReportedConfig>

/// How a received `(epoch, seq)` relates to the last one stored for the same
/// device and topic (DESIGN.md §3: a duplicate is stored once; a gap in
/// events asks for `resync`; a gap in telemetry is only counted).
public enum SequenceCheck: Sendable, Equatable {
    /// The very next message (or the first one seen).
    case next
    /// Not after the last one: a QoS 1 redelivery or replay already stored,
    /// or a late message that fills an earlier gap. Insert it by its key
    /// `(device, epoch, seq)`, which makes a duplicate a no-op.
    case notNewer
    /// `missing` messages of this epoch never arrived before this one.
    case gap(missing: UInt64)
    /// First message of a newer epoch (the agent restarted); `missing` counts
    /// messages of the new epoch before this one that were not seen (seq starts at 1).
    case newEpoch(missing: UInt64)
    /// From an epoch older than the last one stored: a late replay. Insert it
    /// by its key; it says nothing about gaps.
    case olderEpoch

    /// Classifies `incoming` against the last `(epoch, seq)` stored, if any.
    public static func classify(last: (epoch: UInt64, seq: UInt64)?, incoming: (epoch: UInt64, seq: UInt64)) -> SequenceCheck {
        guard let last else { return .next }
        if incoming.epoch < last.epoch { return .olderEpoch }
        if incoming.epoch > last.epoch {
            return incoming.seq > 1 ? .newEpoch(missing: incoming.seq - 1) : .newEpoch(missing: 0)
        }
        if incoming.seq <= last.seq { return .notNewer }
        let missing = incoming.seq - last.seq - 1
        return missing == 0 ? .next : .gap(missing: missing)
    }
}
