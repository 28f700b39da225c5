import Logging
import ServiceLifecycle
import UnixSignals

/// SIGHUP does not stop the agent. Left to its default, a hangup — from
/// logrotate's `postrotate`, a `systemctl reload`, a closed terminal —
/// ended the process, and with it any session in progress (released as a
/// crash, not reported as one). The agent reads its configuration once, at
/// start (a desired config from the console is how a running massager
/// changes), so a hangup has nothing to reload: it is logged and ignored.
struct HangupNotice: Service {
    let hangups: UnixSignalsSequence
    let logger: Logger

    /// - Parameter hangups: `UnixSignalsSequence(trapping: .sighup)`, made as
    ///   early as the process can, so no hangup falls to the default action.
    init(hangups: UnixSignalsSequence, logger: Logger) {
        self.hangups = hangups
        self.logger = logger
    }

    func run() async throws {
        for await _ in hangups.cancelOnGracefulShutdown() {
            logger.notice("SIGHUP ignored: the agent reads its configuration at start; restart it (systemctl restart massage-agent) to apply a changed file. A session in progress goes on.")
        }
    }
}
