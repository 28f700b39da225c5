import Foundation

extension ConsoleCore {
    /// Every `storageCheckSeconds`: the database's size and free disk, for
    /// /metrics and the `disk_space` alert. Every `retention.interval_s`
    /// (the first a minute after the start), on the coordinator only: deletes
    /// what retention says is too old (issue 20, item 5).
    func housekeepingLoop() async {
        let start = clock.now()
        var nextCheck = start
        var nextPrune = start.addingTimeInterval(min(60, configuration.retention.intervalSeconds))
        while !Task.isCancelled {
            let now = clock.now()
            if now >= nextCheck {
                nextCheck = now.addingTimeInterval(Self.storageCheckSeconds)
                await measureStorage()
            }
            if now >= nextPrune {
                nextPrune = now.addingTimeInterval(configuration.retention.intervalSeconds)
                if isCoordinator { await pruneHistory(now: now) }
            }
            let wait = max(0.05, min(nextCheck, nextPrune).timeIntervalSince(clock.now()))
            try? await clock.sleep(for: .seconds(wait))
        }
    }

    static let storageCheckSeconds: TimeInterval = 10

    func measureStorage() async {
        do {
            let status = try await store.storageStatus()
            model.withLock { $0.storage = status }
            metrics.databaseBytes.set(Double(status.databaseBytes))
            metrics.diskFreeBytes.set(Double(status.freeBytes ?? -1))
        } catch {
            logger.warning("could not measure the database's size and free disk", metadata: ["error": "\(error)"])
        }
    }

    /// Deletes events, sessions and cleared alerts older than retention allows.
    func pruneHistory(now: Date) async {
        let cutoffs = configuration.retention.cutoffs(now: now)
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
