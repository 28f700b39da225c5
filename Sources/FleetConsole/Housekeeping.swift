import Foundation
import ServiceLifecycle

/// Persistence's upkeep: every `storageCheckSeconds` the database's size
/// and free disk, for /metrics and the `disk_space` alert; every
/// `retention.interval_s` (the first a minute after the start), on the
/// coordinator only, the deletion of what retention says is too old
/// (issue 20, item 5; `RetentionSettings.cutoffs` decides).
final class Housekeeping: Service, Sendable {
    let context: ConsoleContext
    let state: FleetState
    let store: any EventLog & StorageHealth
    let coordinator: Coordinator

    init(context: ConsoleContext, state: FleetState, store: any EventLog & StorageHealth, coordinator: Coordinator) {
        self.context = context
        self.state = state
        self.store = store
        self.coordinator = coordinator
    }

    static let storageCheckSeconds: TimeInterval = 10

    func run() async throws {
        await cancelWhenGracefulShutdown { await self.loop() }
    }

    private func loop() async {
        let clock = context.clock
        let start = clock.now()
        var nextCheck = start
        var nextPrune = start.addingTimeInterval(min(60, context.configuration.retention.intervalSeconds))
        while !Task.isCancelled {
            let now = clock.now()
            if now >= nextCheck {
                nextCheck = now.addingTimeInterval(Self.storageCheckSeconds)
                await measureStorage()
            }
            if now >= nextPrune {
                nextPrune = now.addingTimeInterval(context.configuration.retention.intervalSeconds)
                if coordinator.isCoordinator { await pruneHistory(now: now) }
            }
            let wait = max(0.05, min(nextCheck, nextPrune).timeIntervalSince(clock.now()))
            try? await clock.sleep(for: .seconds(wait))
        }
    }

    func measureStorage() async {
        do {
            let status = try await store.storageStatus()
            state.model.withLock { $0.storage = status }
            context.metrics.databaseBytes.set(Double(status.databaseBytes))
            context.metrics.diskFreeBytes.set(Double(status.freeBytes ?? -1))
        } catch {
            context.logger.warning("could not measure the database's size and free disk", metadata: ["error": "\(error)"])
        }
    }

    /// Deletes events, sessions and cleared alerts older than retention allows.
    func pruneHistory(now: Date) async {
        let (metrics, logger) = (context.metrics, context.logger)
        let cutoffs = context.configuration.retention.cutoffs(now: now)
        guard cutoffs != RetentionCutoffs() else { return }
        let clock = ContinuousClock()
        let started = clock.now
        do {
            let counts = try await store.prune(cutoffs, chunk: RetentionSettings.chunk)
            metrics.prunedEvents.increment(by: Int64(counts.events))
            metrics.prunedSessions.increment(by: Int64(counts.sessions))
            metrics.prunedAlerts.increment(by: Int64(counts.alerts))
            if counts.total > 0 {
                logger.info("retention deleted old rows", metadata: [
                    "events": "\(counts.events)", "sessions": "\(counts.sessions)", "alerts": "\(counts.alerts)",
                    "took": "\(started.duration(to: clock.now))",
                ])
            }
        } catch {
            logger.error("retention could not delete old rows; tried again at the next interval", metadata: ["error": "\(error)"])
        }
    }
}
