import FleetProtocol
import Foundation
import Logging
import Synchronization

/// What the console's services share, and all they share: the fleet as
/// this console knows it, and the writes waiting for the next commit.
///
/// Ingest writes both; the batch writer takes the pending writes; health,
/// commands, rollouts and the API's queries read the model. Each holds its
/// lock only for a copy or an in-memory change, never across an `await`,
/// so a query or a slow store never makes ingest wait.
final class FleetState: Sendable {
    let model: Mutex<FleetModel>
    /// Events, sessions, usage, command records and audit entries gathered
    /// since the last commit, and the devices whose rows are due a write.
    let pending = Mutex(IngestBatch())
    private let flushSignal: AsyncStream<Void>.Continuation
    /// Wakes the batch writer (`BatchWriter`): a batch grew large, or a
    /// command's record changed and should be stored soon.
    let flushWakeups: AsyncStream<Void>

    init(model: FleetModel) {
        self.model = Mutex(model)
        (flushWakeups, flushSignal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Asks the batch writer to commit now rather than at its next tick.
    func requestFlush() { flushSignal.yield() }

    /// The device's row is written with a coming commit.
    func markDirty(_ address: DeviceAddress) {
        pending.withLock { _ = $0.dirtyDevices.insert(address) }
    }

    /// Records `desired` as the device's desired config (seen retained on
    /// the broker, or written by a rollout).
    func setDesired(_ desired: DesiredConfig, for address: DeviceAddress, at now: Date, onlyIfNewVersion: Bool) {
        model.withLock { m in
            var r = m.record(address)
            if !onlyIfNewVersion || r.desired?.version != desired.version { r.desiredSince = now }
            r.desired = desired
            m.devices[address] = r
        }
    }

    /// Replaces the model's active alerts with what the store holds.
    func replaceActiveAlerts(_ alerts: [AlertRecord], now: Date) {
        model.withLock { m in
            m.activeAlerts = [:]
            for alert in alerts {
                m.activeAlerts[.init(site: alert.site, device: alert.device, type: alert.type)] =
                    .init(id: alert.id, severity: alert.severity, message: alert.message, lastSeen: now)
            }
        }
    }
}

/// What every console service reads and none changes: the configuration,
/// the log, the clock and the metrics.
struct ConsoleContext: Sendable {
    let configuration: ConsoleConfiguration
    let logger: Logger
    /// What the console reads as now and how its loops wait (ConsoleClock.swift).
    let clock: any ConsoleClock
    let metrics: ConsoleMetrics

    var isReplica: Bool { configuration.replica != nil }

    /// This console's instance as an id (its reply topics name it).
    var instance: Identifier {
        Identifier(rawValue: configuration.instance) ?? Identifier(rawValue: "console")!
    }
}

extension Principal {
    /// Throws 403 naming the role `what` needs, unless this principal has it.
    func require(_ role: Principal.Role, for what: String) throws(ConsoleError) {
        guard self.role >= role else {
            throw .forbidden("\(what) needs the \(role.rawValue) role; token '\(name)' is \(self.role.rawValue)")
        }
    }
}
