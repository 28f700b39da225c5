import Synchronization

/// The dashboard's open live-update streams, counted per session and capped
/// (issue 20, item 14: one viewer could hold hundreds open).
///
/// A stream holds a `Slot` from before its response is sent until its body
/// ends (the client went away, the session ended, or the stream's time ran
/// out); a slot that is dropped without being released (a response that was
/// never written) releases itself.
final class LiveStreams: Sendable {
    /// Streams one session may hold open at once.
    let limitPerSession: Int
    private let open = Mutex<[String: Int]>([:])

    init(limitPerSession: Int) {
        self.limitPerSession = limitPerSession
    }

    /// A slot for one more stream of `session`, or nil when it holds `limitPerSession` already.
    func acquire(session: String) -> Slot? {
        let granted = open.withLock { open -> Bool in
            let count = open[session, default: 0]
            guard count < limitPerSession else { return false }
            open[session] = count + 1
            return true
        }
        return granted ? Slot(streams: self, session: session) : nil
    }

    /// Streams `session` holds open now.
    func count(session: String) -> Int { open.withLock { $0[session, default: 0] } }

    fileprivate func release(session: String) {
        open.withLock { open in
            let count = open[session, default: 0] - 1
            open[session] = count > 0 ? count : nil
        }
    }

    /// One open stream's place; released once, by `release()` or at deinit.
    final class Slot: Sendable {
        private let streams: LiveStreams
        private let session: String
        private let released = Atomic<Bool>(false)

        fileprivate init(streams: LiveStreams, session: String) {
            self.streams = streams
            self.session = session
        }

        func release() {
            guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
            streams.release(session: session)
        }

        deinit { release() }
    }
}
