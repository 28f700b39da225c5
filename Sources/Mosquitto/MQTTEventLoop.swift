import CMosquitto
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Threads that drive many libmosquitto clients with its external-loop
/// functions (`mosquitto_socket`, `mosquitto_loop_read/write/misc`) and
/// `poll(2)`, instead of one `mosquitto_loop_start` thread per client.
///
/// Why: the fleet simulator runs a thousand clients in one process; a thread
/// per client costs a thread stack and a wake-up per client per keepalive, and
/// gives us no say over reconnect timing. Here a few threads serve them all and
/// reconnects follow our own backoff with full jitter. docs/BENCHMARKS.md has
/// the measurements of both.
public final class MQTTEventLoopGroup: Sendable {
    let loops: [MQTTEventLoop]
    private let next = Atomic<Int>(0)

    public init(numberOfThreads: Int = 1) {
        loops = (0..<max(1, numberOfThreads)).map { MQTTEventLoop(name: "mqtt-loop-\($0)") }
    }

    /// The process-wide group (one thread), used when no group is given.
    public static let shared = MQTTEventLoopGroup(numberOfThreads: 1)

    func nextLoop() -> MQTTEventLoop {
        let i = next.add(1, ordering: .relaxed).oldValue
        return loops[i % loops.count]
    }

    /// Clients currently registered on all loops.
    public var clientCount: Int { loops.reduce(0) { $0 + $1.clientCount } }

    /// How many times the loops have waited in `poll(2)` so far: an idle
    /// client costs a few a second (its keepalive tick), a busy one one per
    /// batch of socket work. A diagnostic, and how tests see that an idle
    /// loop sleeps instead of spinning.
    public var pollCount: Int { loops.reduce(0) { $0 + $1.pollCount } }
}

final class MQTTEventLoop: Sendable {
    enum Request: Sendable {
        case start(ClientCore)
        case shutdown(ClientCore)
        case abort(ClientCore)
    }

    /// Self-pipe: a byte written to `wakeWrite` interrupts `poll`.
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let inbox = Mutex<[Request]>([])
    private let registered = Atomic<Int>(0)
    private let polls = Atomic<Int>(0)
    /// A wake-up byte is in the pipe, or about to be: later wakes skip the
    /// write(2). The loop clears it right after draining the pipe. Every
    /// publish wakes the loop (libmosquitto is in threaded mode), and each
    /// wake costs the loop a pass over all its clients; merged, a burst of
    /// publishes costs one (the 10,000-device simulators: 49–56 % of a core
    /// each, 53–64 % without, two runs each, docs/BENCHMARKS.md).
    private let wakePending = Atomic<Bool>(false)
    private let name: String

    init(name: String) {
        self.name = name
        var pair: [Int32] = [-1, -1]
        let rc = pipe(&pair)
        precondition(rc == 0, "pipe failed: \(systemErrorText())")
        for fd in pair {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        wakeRead = pair[0]
        wakeWrite = pair[1]
        let thread = Thread { [self] in self.run() }
        thread.name = name
        thread.start()
    }

    var clientCount: Int { registered.load(ordering: .relaxed) }
    var pollCount: Int { polls.load(ordering: .relaxed) }

    func submit(_ request: Request) {
        inbox.withLock { $0.append(request) }
        wake()
    }

    func wake() {
        // Acquiring and releasing: what the caller queued before this is
        // visible to the loop once it clears the flag (below).
        if wakePending.exchange(true, ordering: .acquiringAndReleasing) { return }
        var one: UInt8 = 1
        _ = write(wakeWrite, &one, 1) // a full pipe already means "wake up"
    }

    // MARK: The loop thread

    /// Loop-thread bookkeeping for one client; never leaves this thread.
    private final class Entry {
        enum Phase {
            /// Waiting until `at` before the next connection attempt.
            case waiting(until: ContinuousClock.Instant)
            /// TCP (and TLS) opened, CONNECT sent; CONNACK due by `deadline`.
            case connecting(deadline: ContinuousClock.Instant)
            case connected
            /// DISCONNECT sent; destroy once the socket closed or at `deadline`.
            case closing(deadline: ContinuousClock.Instant)
            /// Gave up (connect() failed, or reconnect disabled); waits for shutdown.
            case stopped
        }
        let core: ClientCore
        var phase: Phase
        var attempt = 0

        init(core: ClientCore, phase: Phase) {
            self.core = core
            self.phase = phase
        }
    }

    private func run() {
        var entries: [ObjectIdentifier: Entry] = [:]
        var fds: [pollfd] = []
        var polled: [Entry] = []
        let clock = ContinuousClock()
        let miscInterval = Duration.seconds(1) // keepalive has 1 s granularity
        var nextMisc = clock.now

        while true {
            // 1. Requests from other threads.
            for request in inbox.withLock({ r -> [Request] in defer { r = [] }; return r }) {
                switch request {
                case .start(let core):
                    let entry = Entry(core: core, phase: .waiting(until: clock.now))
                    entries[ObjectIdentifier(core)] = entry
                    registered.store(entries.count, ordering: .relaxed)
                case .shutdown(let core):
                    guard let entry = entries[ObjectIdentifier(core)] else {
                        core.destroy() // never started
                        continue
                    }
                    if mosquitto_socket(core.mosq) >= 0 {
                        _ = mosquitto_disconnect_v5(core.mosq, 0, nil)
                        entry.phase = .closing(deadline: clock.now + .seconds(2))
                    } else {
                        entry.phase = .closing(deadline: clock.now)
                    }
                case .abort(let core):
                    // As a crash: no DISCONNECT, so the broker publishes the will.
                    entries[ObjectIdentifier(core)] = nil
                    registered.store(entries.count, ordering: .relaxed)
                    core.destroy()
                }
            }

            let now = clock.now

            // 2. Phase changes: sockets that closed, deadlines, attempts due.
            for (key, entry) in entries {
                let core = entry.core
                let socket = mosquitto_socket(core.mosq)
                switch entry.phase {
                case .closing(let deadline):
                    if socket < 0 || now >= deadline {
                        entries[key] = nil
                        registered.store(entries.count, ordering: .relaxed)
                        core.destroy()
                    }
                case .connecting(let deadline):
                    if core.state.withLock({ $0.connection.isConnected }) {
                        entry.phase = .connected
                        entry.attempt = 0
                        if socket < 0 { connectionEnded(entry, wasConnected: true, now: now) }
                    } else if socket < 0 {
                        connectionEnded(entry, wasConnected: false, now: now)
                    } else if now >= deadline {
                        _ = mosquitto_disconnect_v5(core.mosq, 0, nil)
                        core.state.withLock { $0.lastDisconnectError = nil }
                        let error = MQTTError(.timeout, "connecting to \(core.configuration.endpoint) as '\(core.configuration.clientID)': no CONNACK within \(core.configuration.connectTimeout)")
                        failAttempt(entry, error, now: now)
                    }
                case .connected:
                    if socket < 0 { connectionEnded(entry, wasConnected: true, now: now) }
                case .waiting(let until):
                    if now >= until { attemptConnect(entry, now: now) }
                case .stopped:
                    break
                }
            }

            // 3. Keepalive and retries.
            if now >= nextMisc {
                for entry in entries.values where mosquitto_socket(entry.core.mosq) >= 0 {
                    _ = mosquitto_loop_misc(entry.core.mosq)
                }
                nextMisc = now + miscInterval
            }

            // 4. Wait for sockets, the wake-up fd, or the next deadline.
            fds.removeAll(keepingCapacity: true)
            polled.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0))
            var deadline = nextMisc
            for entry in entries.values {
                switch entry.phase {
                case .waiting(let until): deadline = min(deadline, until)
                case .connecting(let d), .closing(let d): deadline = min(deadline, d)
                default: break
                }
                let socket = mosquitto_socket(entry.core.mosq)
                guard socket >= 0 else { continue }
                var events: Int16 = 0
                if !entry.core.inbound.isPaused { events |= Int16(POLLIN) }
                if mosquitto_want_write(entry.core.mosq) { events |= Int16(POLLOUT) }
                fds.append(pollfd(fd: socket, events: events, revents: 0))
                polled.append(entry)
            }
            // Rounded up to whole milliseconds: rounded down, the last
            // millisecond before a deadline was spent in poll(…, 0) calls,
            // a spin of up to 1 ms at every keepalive tick.
            let wait = max(Duration.zero, clock.now.duration(to: deadline))
            let waitMs = Int32(min(1000, (wait.components.seconds * 1000) + (wait.components.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000))
            polls.add(1, ordering: .relaxed)
            let ready = poll(&fds, nfds_t(fds.count), max(waitMs, 0))
            if ready < 0 && errno != EINTR {
                entries.first?.value.core.logger.error("poll failed", metadata: ["error": "\(systemErrorText())"])
            }
            guard ready > 0 else { continue }

            if fds[0].revents != 0 {
                var drain = [UInt8](repeating: 0, count: 256)
                while read(wakeRead, &drain, drain.count) > 0 {}
                // After draining, never before: cleared first, a wake in
                // between left its byte to this drain and the flag set over
                // an empty pipe, and every later wake was skipped until the
                // poll timed out (up to a second). A wake skipped because the
                // flag was still set queued its work before this exchange, so
                // the next pass over the clients sees it.
                _ = wakePending.exchange(false, ordering: .acquiringAndReleasing)
            }
            for (index, entry) in polled.enumerated() {
                let revents = Int32(fds[index + 1].revents)
                guard revents != 0 else { continue }
                let mosq = entry.core.mosq
                if revents & (POLLIN | POLLHUP | POLLERR) != 0, !entry.core.inbound.isPaused {
                    // Drain what is readable: libmosquitto reads about one
                    // packet per call and sets EAGAIN when the socket is empty.
                    // EAGAIN alone does not say so: every packet libmosquitto
                    // queues (a PUBACK for each QoS 1 message) also writes a
                    // byte to its own wake-up socketpair, which nothing
                    // drains, so that write fails with EAGAIN too. Taken at
                    // its word, the loop read one message per poll(2) (0.7x
                    // mosquitto_sub at QoS 1); the bytes left in the socket
                    // settle it.
                    for _ in 0..<256 {
                        errno = 0
                        let rc = mosquitto_loop_read(mosq, 1)
                        let empty = errno == EAGAIN && Self.bytesWaiting(mosquitto_socket(mosq)) == 0
                        if rc != MOSQ_ERR_SUCCESS.rawValue { entry.core.noteLoopError(rc) }
                        // What the packet made libmosquitto queue (a PUBACK,
                        // PUBREC or PUBREL, the QoS 1 publish an acknowledgement
                        // let into flight) goes out now, as it did before
                        // threaded mode. Left until the socket is drained, the
                        // acknowledgements could trail the broker's window (our
                        // receive maximum) and let it run dry.
                        if rc == MOSQ_ERR_SUCCESS.rawValue, mosquitto_socket(mosq) >= 0, mosquitto_want_write(mosq) {
                            let wrc = mosquitto_loop_write(mosq, 1)
                            if wrc != MOSQ_ERR_SUCCESS.rawValue { entry.core.noteLoopError(wrc) }
                        }
                        if rc != MOSQ_ERR_SUCCESS.rawValue || empty || mosquitto_socket(mosq) < 0 || entry.core.inbound.isPaused {
                            break
                        }
                    }
                    entry.core.inbound.flush()
                }
                if revents & POLLOUT != 0, mosquitto_socket(mosq) >= 0 {
                    let rc = mosquitto_loop_write(mosq, 1)
                    if rc != MOSQ_ERR_SUCCESS.rawValue { entry.core.noteLoopError(rc) }
                }
            }
        }
    }

    /// Bytes readable on `socket` now (`FIONREAD`); 0 when closed or unknown.
    private static func bytesWaiting(_ socket: Int32) -> Int32 {
        guard socket >= 0 else { return 0 }
        var count: Int32 = 0
        return ioctl(socket, UInt(FIONREAD), &count) == 0 ? count : 0
    }

    private func attemptConnect(_ entry: Entry, now: ContinuousClock.Instant) {
        let core = entry.core
        let c = core.configuration
        core.state.withLock { s in
            s.connackFailure = nil
            s.lastLogError = nil
            s.lastDisconnectError = nil
        }
        core.setConnection(.connecting(attempt: entry.attempt))
        var rc: Int32
        do {
            let props = CPropertyList()
            if let expiry = c.sessionExpiry { try props.addInt32(MQTT_PROP_SESSION_EXPIRY_INTERVAL, expiry) }
            // Blocking only for the TCP connect; TLS and CONNACK continue in the loop.
            rc = mosquitto_connect_bind_v5(core.mosq, c.host, Int32(c.port), Int32(c.keepAliveSeconds), nil, props.head)
        } catch {
            rc = MOSQ_ERR_INVAL.rawValue
        }
        if rc == MOSQ_ERR_SUCCESS.rawValue {
            entry.phase = .connecting(deadline: now + c.connectTimeout)
        } else {
            let detail = core.state.withLock { $0.lastLogError }
            var error = MQTTError.mosquitto(rc, "connecting to \(c.endpoint) as '\(c.clientID)'", detail: detail)
            if let tls = c.tls, rc == MOSQ_ERR_ERRNO.rawValue, errno == ECONNRESET || errno == EPIPE {
                // The broker hung up during the TLS handshake: most often it refused our certificate.
                error = MQTTError(.tls, "TLS connection to \(c.endpoint) as '\(c.clientID)' was reset during the handshake: the broker may have refused the client certificate '\(tls.certificateFile ?? "none")' (check that it is signed by the broker's CA and not revoked)", mosquittoError: rc)
            }
            failAttempt(entry, error, now: now)
        }
    }

    private func connectionEnded(_ entry: Entry, wasConnected: Bool, now: ContinuousClock.Instant) {
        let core = entry.core
        let error = core.state.withLock { $0.lastDisconnectError }
            ?? MQTTError(.connectionLost, "connection to \(core.configuration.endpoint) was lost")
        if wasConnected {
            entry.attempt = 0
            core.logger.warning("connection lost", metadata: ["mqtt.client": "\(core.configuration.clientID)", "error": "\(error.message)"])
        }
        failAttempt(entry, error, now: now)
    }

    /// Schedules the next attempt with full jitter, or gives up.
    private func failAttempt(_ entry: Entry, _ error: MQTTError, now: ContinuousClock.Instant) {
        let core = entry.core
        let policy = core.configuration.reconnect
        let retry = core.state.withLock { s in
            !s.shuttingDown && policy.enabled && (s.everConnected || s.retryFirstConnect)
        }
        guard retry else {
            entry.phase = .stopped
            core.setConnection(.disconnected(error: error, retryIn: nil))
            core.failConnectWaiters(error)
            return
        }
        let delay = policy.delay(attempt: entry.attempt)
        entry.attempt += 1
        entry.phase = .waiting(until: now + delay)
        core.setConnection(.disconnected(error: error, retryIn: delay))
    }
}
