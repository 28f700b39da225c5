import FleetProtocol
import FleetSettings
import Logging
import ServiceLifecycle
import UnixSignals

/// Reloads the API tokens on SIGHUP (`systemctl reload fleet-console`;
/// issue 20, item 13): the console's configuration file is read again as
/// at start-up (`tokens`, `tokens_file`, `FLEET_CONSOLE_ADMIN_TOKEN`) and
/// its tokens replace the old ones at once (`AccessControl.replaceTokens`):
/// a removed token fails its next API call and the dashboard sessions
/// signed in with it end; a token whose role or sites changed acts with
/// the new ones from the next request. A file with any problem keeps the
/// old tokens and logs the problems, each naming its key. Other settings
/// take effect at the next restart.
public struct TokenReloader: Service {
    let hangups: UnixSignalsSequence
    let core: ConsoleCore
    let load: @Sendable () throws(ConfigurationError) -> [TokenEntry]
    let logger: Logger

    /// - Parameters:
    ///   - hangups: `UnixSignalsSequence(trapping: .sighup)`, made as early as
    ///     start-up allows: from then on SIGHUP no longer ends the process.
    ///   - load: reads the tokens as start-up did (see `ConsoleConfiguration.load`).
    public init(hangups: UnixSignalsSequence, core: ConsoleCore, logger: Logger,
                load: @escaping @Sendable () throws(ConfigurationError) -> [TokenEntry]) {
        self.hangups = hangups
        self.core = core
        self.load = load
        self.logger = logger
    }

    public func run() async throws {
        for await _ in hangups.cancelOnGracefulShutdown() {
            reload()
        }
    }

    /// One reload, as on SIGHUP.
    public func reload() {
        let new: [TokenEntry]
        do { new = try load() } catch {
            logger.error("SIGHUP: the configuration has problems; the API tokens are unchanged",
                         metadata: ["config.problems": "\(error.problems.map(\.description).joined(separator: "; "))"])
            return
        }
        let (ended, added) = core.access.replaceTokens(new)
        if new.isEmpty {
            logger.warning("SIGHUP: no API tokens are configured now: every API request will be refused")
        }
        logger.notice("SIGHUP: API tokens reloaded", metadata: [
            "tokens.count": "\(new.count)",
            "tokens.ended": "\(ended.sorted().joined(separator: ","))",
            "tokens.added": "\(added.sorted().joined(separator: ","))",
        ])
    }
}
