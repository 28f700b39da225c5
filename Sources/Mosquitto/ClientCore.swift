import CMosquitto
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What an acknowledgement carried.
enum AckResult: Sendable {
    case reason(Int)
    case granted([Int])
}

/// The state of one libmosquitto client shared by the loop thread (which runs
/// its callbacks) and the tasks calling the public API.
///
/// Threading contract (STYLE.md habit 4):
/// - `mosq` is created in `init` and destroyed exactly once, on the owning loop
///   thread, inside `gate` so that no caller is inside libmosquitto then.
/// - Lifecycle calls (connect, disconnect, loop_read/write/misc, destroy) happen
///   only on the owning loop thread. Callers only publish, subscribe and
///   unsubscribe, which libmosquitto serialises with its own mutexes; the
///   handle is in threaded mode (`mosquitto_threaded_set`), so those calls
///   only queue the packet and the loop thread alone reads and writes the
///   socket (and, over TLS, the one `SSL` object).
/// - A caller touches the handle only inside `withMosquitto`, i.e. inside
///   `gate`, and that includes asking `mosquitto_want_write` afterwards: once
///   the gate is released the loop thread may destroy the handle at any time
///   (issue 20, item 15: `flushSoon` used to ask after releasing it).
/// - Callbacks copy what they need and hand it on; they never call back into
///   libmosquitto while holding `state`. `gate` is never taken by callbacks.
///
/// Lock order, which is why calling libmosquitto inside `gate` cannot
/// deadlock: `gate` → libmosquitto's own mutexes → `state`. Callbacks run on
/// the loop thread (in threaded mode no call writes, so none fires
/// `on_publish` on the caller's thread) and take only `state`; nothing that
/// holds `state` or a libmosquitto mutex ever waits for `gate`. `gate` guards
/// the handle's lifetime only; STYLE habit 4's "no libmosquitto call under a
/// lock" is about `state`, which callbacks take.
final class ClientCore: @unchecked Sendable {
    // @unchecked: `handle` is a C pointer (not Sendable). It is safe to share
    // under the contract above: callers reach it only through `withMosquitto`,
    // which holds `gate` and checks it has not been destroyed; the loop thread,
    // which alone destroys it, uses it directly; every Swift mutable field
    // lives in a `Mutex` or an `Atomic`.
    private let handle: OpaquePointer
    /// Set inside `gate` just before `mosquitto_destroy`; read by `mosq`.
    private let handleDestroyed = Atomic<Bool>(false)
    /// Uses of the handle after it was destroyed: always 0 unless the
    /// threading contract above is broken (then libmosquitto reads freed
    /// memory). Counted rather than trapped so that a test can show it.
    let usesAfterDestroy = Atomic<Int>(0)
    /// Test seam: runs after every `withMosquitto` call, once `gate` is
    /// released, on the calling thread: where the old `flushSoon` race sat.
    let afterHandleCall = Mutex<(@Sendable () -> Void)?>(nil)

    /// The libmosquitto handle, for the loop thread and for bodies of
    /// `withMosquitto`. Counts (and logs) a use after `destroy()`.
    var mosq: OpaquePointer {
        if handleDestroyed.load(ordering: .acquiring) {
            if usesAfterDestroy.add(1, ordering: .relaxed).newValue == 1 {
                logger.critical("libmosquitto handle used after it was destroyed (a threading bug in Sources/Mosquitto)", metadata: ["mqtt.client": "\(configuration.clientID)"])
            }
        }
        return handle
    }
    let configuration: MQTTConfiguration
    let logger: Logger
    let inbound: InboundBuffer
    let loop: MQTTEventLoop
    /// Every open `connectionStates` stream; each gets every change.
    private let stateObservers = Mutex<[Int: AsyncStream<MQTTConnectionState>.Continuation]>([:])
    private let nextObserver = Mutex(0)

    struct State {
        var connection: MQTTConnectionState = .idle
        /// Bumped on every disconnect so that a late registration of an ack
        /// waiter for a publish sent on a dead connection fails at once.
        var generation: UInt64 = 0
        var pending: [Int32: CheckedContinuation<AckResult, any Error>] = [:]
        var early: [Int32: AckResult] = [:]
        var ignored: Set<Int32> = []
        var cancelled: Set<Int32> = []
        /// QoS ≥ 1 publishes sent with `publishNoWait` not yet acknowledged.
        var unacked: Set<Int32> = []
        var drainWaiters: [CheckedContinuation<Void, any Error>] = []
        var pendingPublishes = 0
        var subscriptions: [Subscription] = []
        var connectWaiters: [CheckedContinuation<Void, any Error>] = []
        var shutdownWaiters: [CheckedContinuation<Void, Never>] = []
        var connackFailure: Int?
        var lastDisconnectError: MQTTError?
        var lastLogError: String?
        var everConnected = false
        /// `connect()` gives up at the first failure; `start()` never does.
        var retryFirstConnect = true
        var started = false
        var shuttingDown = false
        var closed = false
    }

    let state = Mutex(State())
    /// Held while a caller is inside libmosquitto, and while it is destroyed.
    private let gate = Mutex(false)

    init(configuration: MQTTConfiguration, loop: MQTTEventLoop, logger: Logger) throws {
        MosquittoLibrary.initialize()
        try Self.validate(configuration)
        guard let mosq = mosquitto_new(configuration.clientID, configuration.cleanStart, nil) else {
            throw MQTTError(.system, "could not create an MQTT client for '\(configuration.clientID)' (\(systemErrorText()))")
        }
        self.handle = mosq
        self.configuration = configuration
        self.logger = logger
        self.loop = loop
        inbound = InboundBuffer(capacity: configuration.inboundBufferCapacity, onRoom: { [loop] in loop.wake() })
        do {
            try configure()
        } catch {
            mosquitto_destroy(mosq)
            throw error
        }
        // The callbacks find this object through libmosquitto's `obj`; the
        // retain is balanced in `destroy()`.
        mosquitto_user_data_set(mosq, Unmanaged.passRetained(self).toOpaque())
        installCallbacks()
    }

    private static func validate(_ c: MQTTConfiguration) throws {
        guard !c.clientID.isEmpty, c.clientID.utf8.count <= 65535 else {
            throw MQTTError(.invalidArgument, "client id must be 1–65535 bytes, got \(c.clientID.utf8.count)")
        }
        guard (1...65535).contains(c.port) else {
            throw MQTTError(.invalidArgument, "broker port must be 1–65535, got \(c.port)")
        }
        guard (5...65535).contains(c.keepAliveSeconds) else {
            throw MQTTError(.invalidArgument, "keepalive must be 5–65535 seconds, got \(c.keepAliveSeconds)")
        }
        guard (1...65535).contains(c.receiveMaximum), (1...65535).contains(c.sendMaximum) else {
            throw MQTTError(.invalidArgument, "receive and send maximum must be 1–65535")
        }
        guard c.reconnect.initialDelay > .zero, c.reconnect.maximumDelay >= c.reconnect.initialDelay else {
            throw MQTTError(.invalidArgument, "reconnect delays must be positive with maximum ≥ initial")
        }
    }

    private func configure() throws {
        let c = configuration
        let who = "client '\(c.clientID)'"
        func check(_ rc: Int32, _ what: String) throws {
            guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw MQTTError.mosquitto(rc, "\(who): \(what)") }
        }
        // Our own threads drive the client (MQTTEventLoop), so libmosquitto
        // must be told: otherwise it writes each packet on the calling
        // thread. Over TLS that is `SSL_write` on a caller's thread beside
        // `SSL_read` on the loop thread, on one `SSL` object, which OpenSSL
        // forbids (connections dropped under load, SecurityTests
        // "…publishes from many tasks while the client is reading…"); over
        // TCP a caller could write to a descriptor the loop thread had just
        // closed and the process reused. Threaded, a call only queues, and
        // the loop thread alone touches the socket (`withMosquitto` wakes it).
        try check(mosquitto_threaded_set(mosq, true), "declaring our own threads")
        try check(mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5), "selecting MQTT 5")
        try check(mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, c.tcpNoDelay ? 1 : 0), "setting TCP_NODELAY")
        try check(mosquitto_int_option(mosq, MOSQ_OPT_RECEIVE_MAXIMUM, Int32(c.receiveMaximum)), "setting receive maximum")
        try check(mosquitto_int_option(mosq, MOSQ_OPT_SEND_MAXIMUM, Int32(c.sendMaximum)), "setting send maximum")
        if c.username != nil || c.password != nil {
            try check(mosquitto_username_pw_set(mosq, c.username, c.password), "setting username/password")
        }
        if let tls = c.tls {
            for (label, path) in [("CA file", tls.caFile), ("certificate file", tls.certificateFile), ("key file", tls.keyFile)] {
                if let path, access(path, R_OK) != 0 {
                    throw MQTTError(.tls, "\(who): TLS \(label) '\(path)' cannot be read (\(systemErrorText()))")
                }
            }
            if (tls.certificateFile == nil) != (tls.keyFile == nil) {
                throw MQTTError(.tls, "\(who): a TLS client certificate needs both certificate_file and key_file")
            }
            try check(mosquitto_tls_set(mosq, tls.caFile, nil, tls.certificateFile, tls.keyFile, nil), "loading TLS files (CA '\(tls.caFile)')")
            // 1 = SSL_VERIFY_PEER: the broker's certificate must chain to the CA.
            try check(mosquitto_tls_opts_set(mosq, 1, tls.minimumVersion, nil), "setting TLS options (minimum version '\(tls.minimumVersion)'; use tlsv1.2 or tlsv1.3)")
            try check(mosquitto_tls_insecure_set(mosq, !tls.verifyHostname), "setting TLS hostname verification")
        }
        if let will = c.will {
            let props = try will.properties.makeCList(willDelay: will.delayInterval)
            guard will.payload.count < Int(Int32.max) else { throw MQTTError(.invalidArgument, "\(who): will payload too large") }
            let rc = will.payload.withUnsafeBytes { raw in
                mosquitto_will_set_v5(mosq, will.topic, Int32(will.payload.count), raw.baseAddress, Int32(will.qos.rawValue), will.retain, props.head)
            }
            try check(rc, "setting the will on '\(will.topic)'")
            _ = props.release() // libmosquitto owns the list after success
        }
    }

    private func installCallbacks() {
        mosquitto_connect_v5_callback_set(mosq) { _, obj, rc, flags, _ in
            guard let obj else { return }
            Unmanaged<ClientCore>.fromOpaque(obj).takeUnretainedValue().didConnect(rc: Int(rc), flags: flags)
        }
        mosquitto_disconnect_v5_callback_set(mosq) { _, obj, rc, _ in
            guard let obj else { return }
            Unmanaged<ClientCore>.fromOpaque(obj).takeUnretainedValue().didDisconnect(rc: rc)
        }
        mosquitto_publish_v5_callback_set(mosq) { _, obj, mid, reason, _ in
            guard let obj else { return }
            Unmanaged<ClientCore>.fromOpaque(obj).takeUnretainedValue().deliver(mid, .reason(Int(reason)))
        }
        mosquitto_subscribe_v5_callback_set(mosq) { _, obj, mid, count, granted, _ in
            guard let obj else { return }
            let codes = (0..<Int(max(count, 0))).map { Int(granted?[$0] ?? 0x80) }
            Unmanaged<ClientCore>.fromOpaque(obj).takeUnretainedValue().deliver(mid, .granted(codes))
        }
        mosquitto_unsubscribe_v5_callback_set(mosq) { _, obj, mid, _ in
            guard let obj else { return }
            Unmanaged<ClientCore>.fromOpaque(obj).takeUnretainedValue().deliver(mid, .reason(0))
        }
        mosquitto_message_v5_callback_set(mosq) { _, obj, message, props in
            guard let obj, let m = message?.pointee else { return }
            // Copy everything now: libmosquitto frees the message after we return.
            let topic = m.topic.map { String(cString: $0) } ?? ""
            let payload: [UInt8] = m.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: Int(max(m.payloadlen, 0)))) } ?? []
            let message = MQTTMessage(
                topic: topic, payload: payload,
                qos: QoS(rawValue: Int(m.qos)) ?? .atMostOnce, retain: m.retain,
                properties: MQTTProperties(reading: props))
            Unmanaged<ClientCore>.fromOpaque(obj).takeUnretainedValue().inbound.append(message)
        }
        mosquitto_log_callback_set(mosq) { _, obj, level, text in
            guard let obj, let text else { return }
            Unmanaged<ClientCore>.fromOpaque(obj).takeUnretainedValue().didLog(level: level, String(cString: text))
        }
    }

    // MARK: Callbacks (loop thread)

    private func didConnect(rc: Int, flags: Int32) {
        guard rc == 0 else {
            state.withLock { $0.connackFailure = rc }
            return
        }
        let sessionPresent = flags & 1 == 1
        let (waiters, resubscribe) = state.withLock { s -> ([CheckedContinuation<Void, any Error>], [Subscription]) in
            s.connection = .connected(sessionPresent: sessionPresent)
            s.everConnected = true
            s.connackFailure = nil
            s.lastDisconnectError = nil
            defer { s.connectWaiters = [] }
            return (s.connectWaiters, sessionPresent ? [] : s.subscriptions)
        }
        publishState(.connected(sessionPresent: sessionPresent))
        logger.debug("connected", metadata: ["mqtt.client": "\(configuration.clientID)", "mqtt.session_present": "\(sessionPresent)"])
        // Inside a callback libmosquitto only queues; the loop writes it out.
        for sub in resubscribe {
            var mid: Int32 = 0
            let rc = mosquitto_subscribe_v5(mosq, &mid, sub.filter, Int32(sub.qos.rawValue), sub.options, nil)
            if rc == MOSQ_ERR_SUCCESS.rawValue {
                ignore(mid)
            } else {
                logger.warning("resubscribe failed", metadata: ["mqtt.filter": "\(sub.filter)", "error": "\(MQTTError.mosquitto(rc, "resubscribing"))"])
            }
        }
        for w in waiters { w.resume() }
    }

    private func didDisconnect(rc: Int32) {
        var drainFailures: [CheckedContinuation<Void, any Error>] = []
        let (failing, error) = state.withLock { s -> ([CheckedContinuation<AckResult, any Error>], MQTTError?) in
            s.generation &+= 1
            let error = disconnectError(rc: rc, s)
            s.lastDisconnectError = error
            if !s.shuttingDown { s.connection = .disconnected(error: error, retryIn: nil) }
            s.early = [:]
            s.ignored = []
            s.cancelled = []
            s.unacked = []
            drainFailures = s.drainWaiters
            s.drainWaiters = []
            defer { s.pending = [:] }
            return (Array(s.pending.values), error)
        }
        for d in drainFailures { d.resume(throwing: MQTTError(.connectionLost, "connection to \(configuration.endpoint) was lost before every publish was acknowledged")) }
        let lost = MQTTError(.connectionLost, "connection to \(configuration.endpoint) was lost before the broker acknowledged the request" + (error.map { " (\($0.message))" } ?? ""))
        for c in failing { c.resume(throwing: lost) }
    }

    /// Records why the connection failed when libmosquitto returned an error
    /// from `loop_read`/`loop_write` without calling the disconnect callback
    /// (it does so for a failed TLS handshake).
    func noteLoopError(_ rc: Int32) {
        state.withLock { s in
            if s.lastDisconnectError == nil { s.lastDisconnectError = disconnectError(rc: rc, s) }
        }
    }

    /// Why the connection ended (nil for a clean disconnect we asked for).
    private func disconnectError(rc: Int32, _ s: State) -> MQTTError? {
        let c = configuration
        if let reason = s.connackFailure {
            return .connack(reason, host: c.host, port: c.port, clientID: c.clientID)
        }
        if rc == 0 { return s.shuttingDown ? nil : MQTTError(.connectionLost, "the broker at \(c.endpoint) closed the connection") }
        if rc >= 0x80 {
            return MQTTError(.connectionLost, "the broker at \(c.endpoint) disconnected client '\(c.clientID)': \(MQTTError.reasonText(Int(rc)))", reasonCode: Int(rc))
        }
        if rc == MOSQ_ERR_KEEPALIVE.rawValue, let paused = inbound.pausedFor {
            // Not the broker's fault: we stopped reading (PINGRESP included)
            // because our own consumer fell behind.
            return MQTTError(.connectionLost, "connection to \(c.endpoint) as '\(c.clientID)' ended by the keepalive: the client had stopped reading for \(Self.tenths(paused)) s because its consumer fell behind (\(inbound.capacity) messages waiting); it reconnects, and a persistent session loses nothing", mosquittoError: rc)
        }
        let tlsFailure = rc == MOSQ_ERR_TLS.rawValue || rc == MOSQ_ERR_TLS_HANDSHAKE.rawValue
        if let tls = c.tls, tlsFailure || !s.connection.isConnected {
            // Before CONNACK on a TLS connection, a drop is the handshake failing
            // (libmosquitto reports it as TLS or as a lost connection).
            return MQTTError(.tls, "TLS connection to \(c.endpoint) as '\(c.clientID)' failed: check the CA file '\(tls.caFile)', the client certificate and key, and that the broker's certificate names '\(c.host)'" + (s.lastLogError.map { " (\($0))" } ?? ""), mosquittoError: rc)
        }
        return .mosquitto(rc, "connection to \(c.endpoint) as '\(c.clientID)'")
    }

    /// "12.3" for 12.34 s.
    static func tenths(_ d: Duration) -> String {
        let tenths = d.components.seconds * 10 + d.components.attoseconds / 100_000_000_000_000_000
        return "\(tenths / 10).\(tenths % 10)"
    }

    fileprivate func didLog(level: Int32, _ text: String) {
        if level & MOSQ_LOG_ERR != 0 || level & MOSQ_LOG_WARNING != 0 {
            state.withLock { $0.lastLogError = text }
        }
        logger.trace("libmosquitto", metadata: ["mqtt.client": "\(configuration.clientID)", "mqtt.log": "\(text)"])
    }

    // MARK: Acknowledgements

    func deliver(_ mid: Int32, _ result: AckResult) {
        var drained: [CheckedContinuation<Void, any Error>] = []
        let waiter = state.withLock { s -> CheckedContinuation<AckResult, any Error>? in
            if let w = s.pending.removeValue(forKey: mid) { return w }
            if s.unacked.remove(mid) != nil {
                if s.unacked.isEmpty { drained = s.drainWaiters; s.drainWaiters = [] }
                return nil
            }
            if s.ignored.remove(mid) != nil || s.cancelled.remove(mid) != nil { return nil }
            if s.early.count > 65_536 { s.early.removeAll() } // stale acks of a past connection
            s.early[mid] = result
            return nil
        }
        waiter?.resume(returning: result)
        for d in drained { d.resume() }
    }

    /// Tracks the acknowledgement of a publish nobody awaits.
    func track(_ mid: Int32) {
        state.withLock { s in
            if s.early.removeValue(forKey: mid) == nil { s.unacked.insert(mid) }
        }
    }

    /// Waits until every tracked publish was acknowledged.
    func waitForAcknowledgements() async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            let done = state.withLock { s -> Bool in
                if s.unacked.isEmpty { return true }
                s.drainWaiters.append(c)
                return false
            }
            if done { c.resume() }
        }
    }

    /// Forget the acknowledgement of `mid` (QoS 0 publishes, resubscribes).
    func ignore(_ mid: Int32) {
        state.withLock { s in
            if s.early.removeValue(forKey: mid) == nil { s.ignored.insert(mid) }
        }
    }

    func awaitAck(_ mid: Int32, generation: UInt64) async throws -> AckResult {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<AckResult, any Error>) in
                let ready: Result<AckResult, any Error>? = state.withLock { s in
                    if let r = s.early.removeValue(forKey: mid) { return .success(r) }
                    if s.cancelled.remove(mid) != nil { return .failure(CancellationError()) }
                    // Destroyed after the call was sent: `destroy()` already
                    // failed every waiter, and no acknowledgement can come.
                    if s.closed {
                        return .failure(MQTTError(.shutdown, "client '\(configuration.clientID)' was shut down before the broker acknowledged the request"))
                    }
                    if s.generation != generation {
                        return .failure(MQTTError(.connectionLost, "connection to \(configuration.endpoint) was lost before the broker acknowledged the request"))
                    }
                    s.pending[mid] = c
                    return nil
                }
                if let ready { c.resume(with: ready) }
            }
        } onCancel: {
            let c = state.withLock { s -> CheckedContinuation<AckResult, any Error>? in
                if let c = s.pending.removeValue(forKey: mid) { return c }
                s.cancelled.insert(mid)
                return nil
            }
            c?.resume(throwing: CancellationError())
        }
    }

    // MARK: Calls from tasks

    /// Runs `body` with the libmosquitto handle unless the client is closed,
    /// then wakes the loop if libmosquitto queued bytes for it to write (a
    /// call made while the loop thread was inside a callback is only queued).
    ///
    /// `mosquitto_want_write` is asked inside `gate`, with the same handle:
    /// after the gate is released the loop thread may destroy it. The wake-up
    /// itself (a byte on the loop's pipe) needs no handle and happens outside.
    func withMosquitto<T>(_ what: String, _ body: (OpaquePointer) throws -> T) throws -> T {
        let (result, wantsWrite) = try gate.withLock { destroyed in
            guard !destroyed else { throw MQTTError(.shutdown, "\(what): client '\(configuration.clientID)' was shut down") }
            let result = try body(handle)
            return (result, mosquitto_want_write(handle))
        }
        if wantsWrite { loop.wake() }
        afterHandleCall.withLock { $0 }?()
        return result
    }

    /// Fails fast unless connected; returns the connection generation.
    func requireConnected(_ what: String, reservingPublish: Bool = false) throws -> UInt64 {
        try state.withLock { s in
            if s.closed || s.shuttingDown {
                throw MQTTError(.shutdown, "\(what): client '\(configuration.clientID)' was shut down")
            }
            guard case .connected = s.connection else {
                throw MQTTError(.notConnected, "\(what): not connected to the broker at \(configuration.endpoint) (\(Self.describe(s.connection))); nothing was sent")
            }
            if reservingPublish {
                guard s.pendingPublishes < configuration.maxPendingPublishes else {
                    throw MQTTError(.tooManyInFlight, "\(what): \(s.pendingPublishes) publishes are awaiting acknowledgement (limit \(configuration.maxPendingPublishes)); wait for them or raise maxPendingPublishes")
                }
                s.pendingPublishes += 1
            }
            return s.generation
        }
    }

    func releasePublishSlot() {
        state.withLock { $0.pendingPublishes = max(0, $0.pendingPublishes - 1) }
    }

    static func describe(_ s: MQTTConnectionState) -> String {
        switch s {
        case .idle: return "not started"
        case .connecting(let attempt): return "connecting, attempt \(attempt + 1)"
        case .connected: return "connected"
        case .disconnected(let error, let retry):
            let why = error.map { ": \($0.message)" } ?? ""
            if let retry { return "disconnected\(why); retrying in \(retry)" }
            return "disconnected\(why)"
        case .closed: return "shut down"
        }
    }

    // MARK: Loop-thread helpers

    func setConnection(_ new: MQTTConnectionState) {
        state.withLock { $0.connection = new }
        publishState(new)
    }

    private func publishState(_ new: MQTTConnectionState) {
        for c in stateObservers.withLock({ Array($0.values) }) { c.yield(new) }
    }

    /// A new stream of state changes, starting with the current state.
    /// Keeps the newest 64 when its consumer lags.
    func makeStateStream() -> AsyncStream<MQTTConnectionState> {
        let (stream, continuation) = AsyncStream.makeStream(of: MQTTConnectionState.self, bufferingPolicy: .bufferingNewest(64))
        let id = nextObserver.withLock { n -> Int in defer { n += 1 }; return n }
        // Register before reading the current state, so that no change can
        // fall between the two (a change may then be seen twice, never lost).
        stateObservers.withLock { $0[id] = continuation }
        continuation.onTermination = { [weak self] _ in
            _ = self?.stateObservers.withLock { $0.removeValue(forKey: id) }
        }
        let current = state.withLock { $0.connection }
        continuation.yield(current)
        if current == .closed {
            _ = stateObservers.withLock { $0.removeValue(forKey: id) }
            continuation.finish()
        }
        return stream
    }

    /// Resolves `connect()` callers with a failure.
    func failConnectWaiters(_ error: MQTTError) {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, any Error>] in
            defer { s.connectWaiters = [] }
            return s.connectWaiters
        }
        for w in waiters { w.resume(throwing: error) }
    }

    /// Destroys the libmosquitto client and ends every stream. Loop thread only, once.
    func destroy() {
        gate.withLock { destroyed in
            guard !destroyed else { return }
            destroyed = true
            handleDestroyed.store(true, ordering: .releasing)
            mosquitto_destroy(handle)
        }
        let (acks, connects, shutdowns, drains) = state.withLock { s in
            s.closed = true
            s.connection = .closed
            defer { s.pending = [:]; s.connectWaiters = []; s.shutdownWaiters = []; s.drainWaiters = [] }
            return (Array(s.pending.values), s.connectWaiters, s.shutdownWaiters, s.drainWaiters)
        }
        let error = MQTTError(.shutdown, "client '\(configuration.clientID)' was shut down")
        for c in acks { c.resume(throwing: error) }
        for c in connects { c.resume(throwing: error) }
        for c in drains { c.resume(throwing: error) }
        for c in stateObservers.withLock({ o -> [AsyncStream<MQTTConnectionState>.Continuation] in defer { o = [:] }; return Array(o.values) }) {
            c.yield(.closed)
            c.finish()
        }
        inbound.finish()
        for c in shutdowns { c.resume() }
        Unmanaged.passUnretained(self).release() // balances passRetained in init
    }
}

/// `mosquitto_lib_init` exactly once per process.
enum MosquittoLibrary {
    private static let once: Void = { _ = mosquitto_lib_init() }()
    static func initialize() { _ = once }

    /// The libmosquitto version, e.g. "2.0.11".
    static var version: String {
        var major: Int32 = 0, minor: Int32 = 0, revision: Int32 = 0
        _ = mosquitto_lib_version(&major, &minor, &revision)
        return "\(major).\(minor).\(revision)"
    }
}

func systemErrorText() -> String {
    String(cString: strerror(errno))
}
