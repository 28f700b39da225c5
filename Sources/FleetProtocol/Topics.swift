/// A site and a device: the two identifiers in every device topic.
public struct DeviceAddress: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var site: Identifier
    public var device: Identifier

    public init(site: Identifier, device: Identifier) {
        self.site = site
        self.device = device
    }

    /// Validates both strings; the error names which one is wrong.
    public init(site: String, device: String) throws(IdentifierError) {
        self.site = try Identifier(validating: site, as: "site")
        self.device = try Identifier(validating: device, as: "device")
    }

    public var description: String { "\(site)/\(device)" }

    public static func < (lhs: DeviceAddress, rhs: DeviceAddress) -> Bool {
        (lhs.site, lhs.device) < (rhs.site, rhs.device)
    }
}

/// Who publishes on a topic.
public enum TopicPublisher: String, Sendable, Hashable {
    case agent, console
}

/// The per-device topics of DESIGN.md §3, with their QoS and retain flag.
public enum DeviceTopicKind: String, CaseIterable, Sendable, Hashable, CustomStringConvertible {
    case status
    case telemetry
    case events
    case usage
    case cmd
    case configDesired = "config/desired"
    case configReported = "config/reported"

    /// The topic suffix after `{root}/{site}/{device}/`.
    public var suffix: String { rawValue }

    /// The QoS both sides publish and subscribe with.
    public var qos: Int { self == .telemetry ? 0 : 1 }

    /// Whether the message is published retained.
    public var retained: Bool {
        switch self {
        case .status, .usage, .configDesired, .configReported: true
        case .telemetry, .events, .cmd: false
        }
    }

    public var publisher: TopicPublisher {
        switch self {
        case .cmd, .configDesired: .console
        case .status, .telemetry, .events, .usage, .configReported: .agent
        }
    }

    /// Topics the agent publishes (their payloads carry the envelope).
    public static let agentPublished: [DeviceTopicKind] = allCases.filter { $0.publisher == .agent }

    public var description: String { rawValue }
}

/// A topic of the contract, as parsed from a topic string.
public enum FleetTopic: Hashable, Sendable {
    /// `{root}/{site}/{device}/{kind}`.
    case device(DeviceAddress, DeviceTopicKind)
    /// `{root}/_console/state`.
    case consoleState
    /// `{root}/_console/reply/{instance}`: the recommended Response Topic of a console instance.
    case consoleReply(instance: Identifier)
}

/// A topic string or filter the contract refuses, with the reason.
public struct TopicError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The topic root (default `massage/v1`) and everything built on it: device
/// topics, the console topics, subscription filters and the parser.
public struct TopicRoot: Hashable, Sendable, CustomStringConvertible {
    public static let `default` = TopicRoot(unchecked: "massage/v1")
    /// The level under the root that holds console topics. It cannot be a
    /// site id: ids start with a letter or digit.
    public static let consoleLevel = "_console"
    public static let maxLength = 256

    public let rawValue: String

    /// Validates a configured root: one or more non-empty levels separated by
    /// `/`, no wildcards (`+`, `#`), no NUL, not starting with `$`, no
    /// leading or trailing `/`, at most 256 bytes.
    public init(_ value: String) throws(TopicError) {
        if value.isEmpty { throw TopicError("topic root is empty") }
        if value.utf8.count > Self.maxLength {
            throw TopicError("topic root is longer than \(Self.maxLength) bytes")
        }
        if value.hasPrefix("$") { throw TopicError("topic root \(quoted(value)) must not start with '$'") }
        if value.contains(where: { $0 == "+" || $0 == "#" || $0 == "\u{0}" }) {
            throw TopicError("topic root \(quoted(value)) must not contain '+', '#' or NUL")
        }
        if value.split(separator: "/", omittingEmptySubsequences: false).contains(where: \.isEmpty) {
            throw TopicError("topic root \(quoted(value)) has an empty level (leading, trailing or double '/')")
        }
        self.rawValue = value
    }

    private init(unchecked value: String) { self.rawValue = value }

    public var description: String { rawValue }

    // MARK: Topics

    public func topic(_ kind: DeviceTopicKind, for device: DeviceAddress) -> String {
        "\(rawValue)/\(device.site.rawValue)/\(device.device.rawValue)/\(kind.suffix)"
    }

    /// `{root}/_console/state`: the console's retained presence (and will).
    public var consoleStateTopic: String { "\(rawValue)/\(Self.consoleLevel)/state" }

    /// `{root}/_console/reply/{instance}`: the recommended Response Topic for
    /// a console instance's commands (one per instance, so replicas do not
    /// see each other's replies).
    public func consoleReplyTopic(instance: Identifier) -> String {
        "\(rawValue)/\(Self.consoleLevel)/reply/\(instance.rawValue)"
    }

    /// `{root}/_console/reply/{instance}/{site}/{device}`: the Response Topic
    /// a console instance gives one device's copy of a command. The broker's
    /// ACL lets each device write exactly its own reply topic of each
    /// provisioned console instance (deploy/provision.sh), so the topic, not
    /// the payload, says who answered, and a device has no other reply topic
    /// to fill with retained messages (docs/security.md).
    public func consoleReplyTopic(instance: Identifier, for device: DeviceAddress) -> String {
        "\(consoleReplyTopic(instance: instance))/\(device.site.rawValue)/\(device.device.rawValue)"
    }

    /// `{root}/_console/reply/{instance}/+/+`: every device's reply topic of
    /// a console instance (what that instance subscribes to).
    public func consoleReplyFilter(instance: Identifier) -> String {
        "\(consoleReplyTopic(instance: instance))/+/+"
    }

    /// The device whose reply topic of `instance` `topic` is, or nil when it
    /// is not exactly `{root}/_console/reply/{instance}/{site}/{device}`.
    public func replyingDevice(_ topic: String, instance: Identifier) -> DeviceAddress? {
        let prefix = consoleReplyTopic(instance: instance) + "/"
        guard topic.hasPrefix(prefix) else { return nil }
        let levels = topic.utf8.dropFirst(prefix.utf8.count).split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        guard levels.count == 2 else { return nil }
        return try? DeviceAddress(site: String(decoding: levels[0], as: UTF8.self), device: String(decoding: levels[1], as: UTF8.self))
    }

    // MARK: Filters

    /// `{root}/#`: everything under the root (what the console subscribes to).
    public var everythingFilter: String { "\(rawValue)/#" }

    /// `{root}/{site|+}/{device|+}/{kind}`, e.g. `massage/v1/+/+/status`.
    public func filter(_ kind: DeviceTopicKind, site: Identifier? = nil, device: Identifier? = nil) -> String {
        "\(rawValue)/\(site?.rawValue ?? "+")/\(device?.rawValue ?? "+")/\(kind.suffix)"
    }

    /// The filters for everything agents publish (status, telemetry, events,
    /// usage, config/reported), for every site or one site.
    public func agentMessageFilters(site: Identifier? = nil) -> [String] {
        DeviceTopicKind.agentPublished.map { filter($0, site: site) }
    }

    /// What an agent subscribes to: its `cmd` and its `config/desired`.
    public func agentSubscriptions(for device: DeviceAddress) -> [String] {
        [topic(.cmd, for: device), topic(.configDesired, for: device)]
    }

    /// MQTT 5 shared subscription `$share/{group}/{filter}`: console replicas
    /// in the same group split the messages of `filter` between them.
    public static func sharedSubscription(group: String, filter: String) throws(TopicError) -> String {
        if group.isEmpty { throw TopicError("shared subscription group is empty") }
        if group.contains(where: { $0 == "/" || $0 == "+" || $0 == "#" || $0 == "\u{0}" }) {
            throw TopicError("shared subscription group \(quoted(group)) must not contain '/', '+', '#' or NUL")
        }
        if filter.isEmpty { throw TopicError("shared subscription filter is empty") }
        if filter.hasPrefix("$share/") { throw TopicError("filter \(quoted(filter)) is already a shared subscription") }
        return "$share/\(group)/\(filter)"
    }

    // MARK: Parsing

    /// The topic the string names, or nil for anything else (other roots,
    /// bad ids, unknown suffixes, wildcards, empty levels).
    public func parse(_ topic: String) -> FleetTopic? {
        try? parseTopic(topic)
    }

    /// Like `parse`, with the reason a topic was refused.
    public func parseTopic(_ topic: String) throws(TopicError) -> FleetTopic {
        let prefix = rawValue + "/"
        guard topic.hasPrefix(prefix) else {
            throw TopicError("topic \(quoted(topic)) is not under the root \(quoted(rawValue))")
        }
        // Substrings, not Strings: ingest parses the topic of every message.
        let levels = topic.dropFirst(prefix.count).split(separator: "/", maxSplits: 4, omittingEmptySubsequences: false)
        if levels.first == Substring(Self.consoleLevel) {
            if levels.count == 2, levels[1] == "state" { return .consoleState }
            if levels.count == 3, levels[1] == "reply", let instance = Identifier(rawValue: String(levels[2])) {
                return .consoleReply(instance: instance)
            }
            throw TopicError("topic \(quoted(topic)) is not a console topic of the contract")
        }
        guard levels.count == 3 || levels.count == 4 else {
            throw TopicError("topic \(quoted(topic)) does not have the form {root}/{site}/{device}/{kind}")
        }
        let kindName = levels.count == 3 ? String(levels[2]) : levels[2] + "/" + levels[3]
        guard let kind = DeviceTopicKind(rawValue: kindName) else {
            throw TopicError("topic \(quoted(topic)) has an unknown kind \(quoted(kindName))")
        }
        do {
            return .device(try DeviceAddress(site: String(levels[0]), device: String(levels[1])), kind)
        } catch {
            throw TopicError("topic \(quoted(topic)): \(error)")
        }
    }

    /// Whether `topic` is acceptable as a topic to publish to (a command's
    /// `reply_to`): non-empty, at most 65,535 bytes, not starting with `$`,
    /// no wildcards, no NUL.
    public static func isValidPublishTopic(_ topic: String) -> Bool {
        !topic.isEmpty && topic.utf8.count <= 65_535 && !topic.hasPrefix("$")
            && !topic.contains(where: { $0 == "+" || $0 == "#" || $0 == "\u{0}" })
    }
}
