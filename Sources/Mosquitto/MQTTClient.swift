import CMosquitto
import Logging

/// An MQTT 5 client over libmosquitto, used by the agent, the console and the
/// simulator.
///
/// ```swift
/// let client = try MQTTClient(configuration: .init(host: "127.0.0.1", port: 1883, clientID: "agent-1"))
/// try await client.connect()
/// try await client.subscribe([Subscription("massage/v1/+/+/status")])
/// try await client.publish("massage/v1/a/b/events", payload: bytes, qos: .atLeastOnce)
/// for await message in client.messages { … }
/// await client.shutdown()
/// ```
///
/// After the first successful connection the client reconnects on its own
/// (exponential backoff, full jitter) and resubscribes. Publishing while
/// disconnected fails at once with `.notConnected`: durable queuing belongs
/// to the caller (the agent's outbox).
public final class MQTTClient: Sendable {
    let core: ClientCore

    public init(configuration: MQTTConfiguration, eventLoopGroup: MQTTEventLoopGroup = .shared, logger: Logger = Logger(label: "massagefleet.mqtt")) throws {
        core = try ClientCore(configuration: configuration, loop: eventLoopGroup.nextLoop(), logger: logger)
    }

    deinit {
        // A client dropped without `shutdown()` still disconnects cleanly and
        // releases libmosquitto's resources.
        let closed = core.state.withLock { s -> Bool in
            defer { s.shuttingDown = true }
            return s.closed || s.shuttingDown
        }
        if !closed { core.loop.submit(.shutdown(core)) }
    }

    public var configuration: MQTTConfiguration { core.configuration }

    /// Messages from every subscription, in arrival order, for one consumer.
    public var messages: MQTTMessages { MQTTMessages(buffer: core.inbound) }

    /// A new stream of connection states: the current one, then every change
    /// (each call gets its own stream; the newest 64 are kept if it lags). A
    /// change that races the subscription may be delivered twice, never lost.
    public var connectionStates: AsyncStream<MQTTConnectionState> { core.makeStateStream() }

    public var connectionState: MQTTConnectionState { core.state.withLock { $0.connection } }

    public var isConnected: Bool { connectionState.isConnected }

    /// The libmosquitto version this process runs with.
    public static var libraryVersion: String {
        MosquittoLibrary.initialize()
        return MosquittoLibrary.version
    }

    /// Starts connecting in the background and keeps trying with backoff
    /// until `shutdown()`. Watch `connectionStates` to follow it.
    public func start() {
        let first = core.state.withLock { s -> Bool in
            guard !s.started, !s.shuttingDown else { return false }
            s.started = true
            s.retryFirstConnect = true
            return true
        }
        if first { core.loop.submit(.start(core)) }
    }

    /// Connects and waits for the broker's CONNACK. Throws the first failure
    /// (unreachable, refused, not authorised, TLS) instead of retrying; after
    /// a successful connection, later losses are retried automatically.
    public func connect() async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            enum Next { case submit, wait, done(Result<Void, MQTTError>) }
            let next: Next = core.state.withLock { s in
                if s.closed || s.shuttingDown { return .done(.failure(MQTTError(.shutdown, "client '\(core.configuration.clientID)' was shut down"))) }
                if case .connected = s.connection { return .done(.success(())) }
                s.connectWaiters.append(c)
                if s.started { return .wait }
                s.started = true
                s.retryFirstConnect = false
                return .submit
            }
            switch next {
            case .submit: core.loop.submit(.start(core))
            case .wait: break
            case .done(let result): c.resume(with: result)
            }
        }
    }

    /// Publishes a message. QoS 0 returns once queued for the loop thread to
    /// write; QoS 1 and 2 return when the broker acknowledged it (PUBACK /
    /// PUBCOMP) with its reason code, and throw if it answered with a failure.
    @discardableResult
    public func publish(_ topic: String, payload: [UInt8], qos: QoS = .atMostOnce, retain: Bool = false, properties: MQTTProperties = .init()) async throws -> PublishResult {
        let what = "publishing to '\(topic)'"
        guard payload.count <= 268_435_455 else {
            throw MQTTError(.invalidArgument, "\(what): payload of \(payload.count) bytes exceeds MQTT's 256 MiB limit")
        }
        let props = properties.isEmpty ? nil : try properties.makeCList()
        let generation = try core.requireConnected(what, reservingPublish: qos != .atMostOnce)
        defer { if qos != .atMostOnce { core.releasePublishSlot() } }
        var mid: Int32 = 0
        let rc = try core.withMosquitto(what) { mosq in
            payload.withUnsafeBytes { raw in
                mosquitto_publish_v5(mosq, &mid, topic, Int32(payload.count), raw.baseAddress, Int32(qos.rawValue), retain, props?.head)
            }
        }
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw MQTTError.mosquitto(rc, what) }
        guard qos != .atMostOnce else {
            core.ignore(mid)
            return PublishResult(reasonCode: 0)
        }
        guard case .reason(let reason) = try await core.awaitAck(mid, generation: generation) else {
            throw MQTTError(.protocolError, "\(what): unexpected acknowledgement")
        }
        if reason >= 0x80 { throw MQTTError.rejected(reason, what) }
        return PublishResult(reasonCode: reason)
    }

    /// Publishes without waiting for the acknowledgement, as a firehose does
    /// (`mosquitto_pub -l`, a bulk replay): the message is handed to the
    /// socket (libmosquitto keeps `sendMaximum` in flight and queues the
    /// rest) and its acknowledgement is tracked; `waitForAcknowledgements()`
    /// returns once every such publish was acknowledged. Fails fast when
    /// disconnected, like `publish`.
    public func publishNoWait(_ topic: String, payload: [UInt8], qos: QoS, retain: Bool = false, properties: MQTTProperties = .init()) throws {
        let what = "publishing to '\(topic)'"
        guard payload.count <= 268_435_455 else {
            throw MQTTError(.invalidArgument, "\(what): payload of \(payload.count) bytes exceeds MQTT's 256 MiB limit")
        }
        let props = properties.isEmpty ? nil : try properties.makeCList()
        _ = try core.requireConnected(what)
        var mid: Int32 = 0
        let rc = try core.withMosquitto(what) { mosq in
            payload.withUnsafeBytes { raw in
                mosquitto_publish_v5(mosq, &mid, topic, Int32(payload.count), raw.baseAddress, Int32(qos.rawValue), retain, props?.head)
            }
        }
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw MQTTError.mosquitto(rc, what) }
        if qos == .atMostOnce { core.ignore(mid) } else { core.track(mid) }
    }

    /// Waits until every `publishNoWait` message was acknowledged; throws
    /// `connectionLost` if the connection dropped first.
    public func waitForAcknowledgements() async throws {
        try await core.waitForAcknowledgements()
    }

    /// Subscribes and returns the granted QoS per subscription. The
    /// subscriptions are remembered and renewed after every reconnect that
    /// did not resume a session.
    @discardableResult
    public func subscribe(_ subscriptions: [Subscription]) async throws -> [QoS] {
        var granted: [QoS] = []
        for sub in subscriptions {
            let what = "subscribing to '\(sub.filter)'"
            let generation = try core.requireConnected(what)
            core.state.withLock { s in
                s.subscriptions.removeAll { $0.filter == sub.filter }
                s.subscriptions.append(sub)
            }
            var mid: Int32 = 0
            let rc = try core.withMosquitto(what) { mosq in
                mosquitto_subscribe_v5(mosq, &mid, sub.filter, Int32(sub.qos.rawValue), sub.options, nil)
            }
            guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                forget(sub.filter)
                throw MQTTError.mosquitto(rc, what)
            }
            guard case .granted(let codes) = try await core.awaitAck(mid, generation: generation), let code = codes.first else {
                throw MQTTError(.protocolError, "\(what): unexpected acknowledgement")
            }
            if code >= 0x80 {
                forget(sub.filter)
                throw MQTTError.rejected(code, what)
            }
            granted.append(QoS(rawValue: code) ?? .atMostOnce)
        }
        return granted
    }

    public func subscribe(_ filter: String, qos: QoS = .atLeastOnce) async throws {
        try await subscribe([Subscription(filter, qos: qos)])
    }

    public func unsubscribe(_ filters: [String]) async throws {
        for filter in filters {
            let what = "unsubscribing from '\(filter)'"
            forget(filter)
            let generation = try core.requireConnected(what)
            var mid: Int32 = 0
            let rc = try core.withMosquitto(what) { mosq in
                mosquitto_unsubscribe_v5(mosq, &mid, filter, nil)
            }
            guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw MQTTError.mosquitto(rc, what) }
            _ = try await core.awaitAck(mid, generation: generation)
        }
    }

    private func forget(_ filter: String) {
        core.state.withLock { $0.subscriptions.removeAll { $0.filter == filter } }
    }

    /// Sends DISCONNECT (so no will is published), waits up to 2 s for it to
    /// go out, then frees everything and ends `messages` and `connectionStates`.
    public func shutdown() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let submit = core.state.withLock { s -> Bool? in
                if s.closed { return nil }
                s.shutdownWaiters.append(c)
                defer { s.shuttingDown = true }
                return !s.shuttingDown
            }
            switch submit {
            case nil: c.resume()
            case true?: core.loop.submit(.shutdown(core))
            case false?: break
            }
        }
    }

    /// Drops the connection without DISCONNECT, as a crash or a pulled cable
    /// would, so the broker publishes the will. The client is closed after.
    /// For tests and chaos tools.
    public func closeAbruptly() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let submit = core.state.withLock { s -> Bool in
                if s.closed { return false }
                s.shutdownWaiters.append(c)
                s.shuttingDown = true
                return true
            }
            if submit { core.loop.submit(.abort(core)) } else { c.resume() }
        }
    }
}
