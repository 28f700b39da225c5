/// Quality of service of a publish or subscription.
public enum QoS: Int, Sendable, Comparable, CaseIterable {
    case atMostOnce = 0
    case atLeastOnce = 1
    case exactlyOnce = 2

    public static func < (lhs: QoS, rhs: QoS) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// An MQTT 5 user property (a name/value pair; names may repeat).
public struct UserProperty: Sendable, Hashable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// The MQTT 5 properties this client sends and reports on PUBLISH (and on the will).
public struct MQTTProperties: Sendable, Equatable {
    public var responseTopic: String?
    public var correlationData: [UInt8]?
    public var userProperties: [UserProperty]
    /// Seconds after which the broker drops the message if undelivered.
    public var messageExpiryInterval: UInt32?
    public var contentType: String?
    /// 1 = the payload is UTF-8 text.
    public var payloadFormatIndicator: UInt8?

    public init(
        responseTopic: String? = nil,
        correlationData: [UInt8]? = nil,
        userProperties: [UserProperty] = [],
        messageExpiryInterval: UInt32? = nil,
        contentType: String? = nil,
        payloadFormatIndicator: UInt8? = nil
    ) {
        self.responseTopic = responseTopic
        self.correlationData = correlationData
        self.userProperties = userProperties
        self.messageExpiryInterval = messageExpiryInterval
        self.contentType = contentType
        self.payloadFormatIndicator = payloadFormatIndicator
    }

    var isEmpty: Bool { self == MQTTProperties() }
}

/// A message received from the broker (bytes copied out of libmosquitto's buffer).
public struct MQTTMessage: Sendable, Equatable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: QoS
    public var retain: Bool
    public var properties: MQTTProperties

    public init(topic: String, payload: [UInt8], qos: QoS = .atMostOnce, retain: Bool = false, properties: MQTTProperties = .init()) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
    }
}

/// What the broker said about a QoS ≥ 1 publish (for QoS 0 there is no
/// acknowledgement and the reason code is 0).
public struct PublishResult: Sendable, Equatable {
    /// 0 (success) or 16 (no matching subscribers); failures (≥ 0x80) throw instead.
    public var reasonCode: Int
}

/// An MQTT 5 subscription request.
public struct Subscription: Sendable, Hashable {
    public enum RetainHandling: Int, Sendable {
        /// Send retained messages at every subscribe.
        case sendAlways = 0x00
        /// Send retained messages only if the subscription is new.
        case sendIfNew = 0x10
        /// Never send retained messages for this subscription.
        case never = 0x20
    }

    public var filter: String
    public var qos: QoS
    /// Don't deliver this client's own publishes back to it.
    public var noLocal: Bool
    /// Keep the retain flag as published instead of clearing it on live delivery.
    public var retainAsPublished: Bool
    public var retainHandling: RetainHandling

    public init(_ filter: String, qos: QoS = .atLeastOnce, noLocal: Bool = false, retainAsPublished: Bool = false, retainHandling: RetainHandling = .sendAlways) {
        self.filter = filter
        self.qos = qos
        self.noLocal = noLocal
        self.retainAsPublished = retainAsPublished
        self.retainHandling = retainHandling
    }

    var options: Int32 {
        var o = Int32(retainHandling.rawValue)
        if noLocal { o |= 0x04 }
        if retainAsPublished { o |= 0x08 }
        return o
    }
}

/// The last will the broker publishes when the connection dies without DISCONNECT.
public struct Will: Sendable, Equatable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: QoS
    public var retain: Bool
    public var properties: MQTTProperties
    /// MQTT 5 will delay interval, seconds.
    public var delayInterval: UInt32?

    public init(topic: String, payload: [UInt8], qos: QoS = .atLeastOnce, retain: Bool = true, properties: MQTTProperties = .init(), delayInterval: UInt32? = nil) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.delayInterval = delayInterval
    }
}

/// TLS settings. TLS 1.2 is the minimum; the broker's certificate is always
/// verified against `caFile`, and its name against the host unless
/// `verifyHostname` is turned off (never in production).
public struct TLSConfiguration: Sendable, Equatable {
    public var caFile: String
    public var certificateFile: String?
    public var keyFile: String?
    public var verifyHostname: Bool
    public var minimumVersion: String

    public init(caFile: String, certificateFile: String? = nil, keyFile: String? = nil, verifyHostname: Bool = true, minimumVersion: String = "tlsv1.2") {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.verifyHostname = verifyHostname
        self.minimumVersion = minimumVersion
    }
}

/// Exponential backoff with full jitter between reconnect attempts: attempt
/// *n* waits a uniformly random time in `0 ... min(maximumDelay, initialDelay × 2ⁿ)`,
/// so a broker restart doesn't bring a whole fleet back in the same second.
public struct ReconnectPolicy: Sendable, Equatable {
    public var initialDelay: Duration
    public var maximumDelay: Duration
    /// Reconnect automatically after the connection was lost.
    public var enabled: Bool

    public init(initialDelay: Duration = .milliseconds(250), maximumDelay: Duration = .seconds(30), enabled: Bool = true) {
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
        self.enabled = enabled
    }

    /// The ceiling of the jitter window for a given attempt (0-based).
    public func ceiling(attempt: Int) -> Duration {
        let factor = 1 << min(max(attempt, 0), 30)
        let grown = initialDelay * factor
        return grown < maximumDelay ? grown : maximumDelay
    }

    /// A full-jitter delay for the given attempt, from the system's generator.
    public func delay(attempt: Int) -> Duration {
        var generator = SystemRandomNumberGenerator()
        return delay(attempt: attempt, using: &generator)
    }

    /// A full-jitter delay for the given attempt.
    public func delay(attempt: Int, using generator: inout some RandomNumberGenerator) -> Duration {
        let cap = ceiling(attempt: attempt)
        let capNanos = cap.components.seconds * 1_000_000_000 + cap.components.attoseconds / 1_000_000_000
        guard capNanos > 0 else { return .zero }
        return .nanoseconds(Int64.random(in: 0...capNanos, using: &generator))
    }
}

/// Everything a connection needs.
public struct MQTTConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var clientID: String
    /// Seconds between PINGREQs when idle; the broker declares the client dead after 1.5×.
    public var keepAliveSeconds: Int
    /// MQTT 5 Clean Start. With `false` and a `sessionExpiry`, the broker keeps
    /// subscriptions and queued QoS ≥ 1 messages across disconnects.
    public var cleanStart: Bool
    /// MQTT 5 session expiry interval in seconds (nil = 0: session ends with the connection).
    public var sessionExpiry: UInt32?
    public var username: String?
    public var password: String?
    public var tls: TLSConfiguration?
    public var will: Will?
    public var reconnect: ReconnectPolicy
    /// How long to wait for CONNACK after the TCP (and TLS) connection opened.
    public var connectTimeout: Duration
    /// Disable Nagle's algorithm: small messages go out at once.
    public var tcpNoDelay: Bool
    /// MQTT 5 Receive Maximum: QoS ≥ 1 messages the broker may have in flight to us.
    public var receiveMaximum: Int
    /// MQTT 5 send maximum: QoS ≥ 1 publishes we keep in flight to the broker.
    public var sendMaximum: Int
    /// Messages held for the consumer of `messages` before the client stops
    /// reading from the socket (TCP backpressure; nothing is dropped).
    public var inboundBufferCapacity: Int
    /// QoS ≥ 1 publishes awaiting acknowledgement; past this `publish` throws
    /// `tooManyInFlight` rather than queue without bound.
    public var maxPendingPublishes: Int

    public init(
        host: String = "127.0.0.1",
        port: Int = 1883,
        clientID: String,
        keepAliveSeconds: Int = 30,
        cleanStart: Bool = true,
        sessionExpiry: UInt32? = nil,
        username: String? = nil,
        password: String? = nil,
        tls: TLSConfiguration? = nil,
        will: Will? = nil,
        reconnect: ReconnectPolicy = .init(),
        connectTimeout: Duration = .seconds(10),
        tcpNoDelay: Bool = true,
        receiveMaximum: Int = 100,
        sendMaximum: Int = 100,
        inboundBufferCapacity: Int = 10_000,
        maxPendingPublishes: Int = 10_000
    ) {
        self.host = host
        self.port = port
        self.clientID = clientID
        self.keepAliveSeconds = keepAliveSeconds
        self.cleanStart = cleanStart
        self.sessionExpiry = sessionExpiry
        self.username = username
        self.password = password
        self.tls = tls
        self.will = will
        self.reconnect = reconnect
        self.connectTimeout = connectTimeout
        self.tcpNoDelay = tcpNoDelay
        self.receiveMaximum = receiveMaximum
        self.sendMaximum = sendMaximum
        self.inboundBufferCapacity = inboundBufferCapacity
        self.maxPendingPublishes = maxPendingPublishes
    }

    var endpoint: String { "\(host):\(port)" }
}

/// Where a client's connection stands.
public enum MQTTConnectionState: Sendable, Equatable {
    /// Created, `start()`/`connect()` not called yet.
    case idle
    /// Opening the connection (attempt counts from 0 since the last success).
    case connecting(attempt: Int)
    /// CONNACK received.
    case connected(sessionPresent: Bool)
    /// The connection is down; `error` says why, `retryIn` when the next attempt is (nil: no retry).
    case disconnected(error: MQTTError?, retryIn: Duration?)
    /// Shut down for good.
    case closed

    public var isConnected: Bool {
        if case .connected = self { return true }
        return false
    }
}
