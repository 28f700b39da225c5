import FleetProtocol
import Foundation
import ServiceLifecycle
import Synchronization

/// Persistence: commits what ingest and the command service gathered in
/// the pending batch (`FleetState.pending`), one transaction per batch,
/// never one per message; a failed commit is put back and tried again with
/// the next batch.
final class BatchWriter: Service, Sendable {
    let context: ConsoleContext
    let state: FleetState
    let store: any EventLog & DeviceRows
    let liveness: Liveness
    /// Where forgetting a device is recorded.
    let audit: AuditTrail
    /// Commits and forgets, one at a time in order (see `SerialGate`).
    let commitGate = SerialGate()
    /// Which changed device rows each commit writes (see `flushNow`).
    private let rowSchedule: Mutex<DeviceRowSchedule>

    init(context: ConsoleContext, state: FleetState, store: any EventLog & DeviceRows, liveness: Liveness, audit: AuditTrail) {
        self.context = context
        self.audit = audit
        self.state = state
        self.store = store
        self.liveness = liveness
        let interval = Self.deviceRowInterval(replica: context.isReplica)
        rowSchedule = Mutex(DeviceRowSchedule(interval: interval, slots: Int(interval / Self.batchInterval), start: .now))
    }

    /// A batch is committed every `batchInterval`, when it holds `batchSize`
    /// items, or as soon as messages stop coming for a `batchTick`. Under load
    /// a commit every `batchInterval`: every commit rewrites the event-key
    /// index pages its events land on (one or two per device), so fewer,
    /// larger commits write far less: with 1,000 devices reporting, going
    /// from 50 ms and 500 items to these cut the console's CPU per event by
    /// about a tenth (docs/BENCHMARKS.md). When the stream pauses, what came
    /// is committed within a tick instead of waiting. On the real monotonic
    /// clock, not the console's: this is about how much work a commit
    /// carries, not about what time it is.
    static let batchInterval = Duration.milliseconds(100)
    static let batchTick = Duration.milliseconds(10)
    static let batchSize = 5000

    /// Until shutdown; the last commit is the console's (`ConsoleCore.run`),
    /// after ingest has stopped.
    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.tick() }
                for await _ in self.state.flushWakeups { await self.flushNow() }
                group.cancelAll()
            }
        }
    }

    /// Wakes the flusher when the interval is up or the stream paused.
    private func tick() async {
        var lastCount = 0
        var lastFlush = ContinuousClock.now
        while !Task.isCancelled {
            try? await Task.sleep(for: Self.batchTick)
            let count = state.pending.withLock { $0.count }
            let now = ContinuousClock.now
            // Nothing came since the last tick, or the interval is up (device rows ride on this one too).
            if (count > 0 && count == lastCount) || now - lastFlush >= Self.batchInterval {
                state.requestFlush()
                lastFlush = now
                lastCount = 0
            } else {
                lastCount = count
            }
        }
    }

    /// How often a changed device's row is written (see `flushNow`): every
    /// second for replicas, which share their view of the fleet through
    /// these rows.
    static func deviceRowInterval(replica: Bool) -> Duration { replica ? .seconds(1) : .seconds(5) }

    /// Commits what ingest gathered. Events, sessions and usage go in every
    /// batch; device rows (a cache of the in-memory model for the next start)
    /// within `deviceRowInterval` of the change, spread over the commits
    /// (`DeviceRowSchedule`), and all of them at shutdown: with a thousand
    /// devices reporting, writing every touched row every 50 ms cost more
    /// than the events themselves. The event high-water marks they hold are re-read
    /// from the event table at start-up, so a crash loses nothing by it;
    /// the rest of a row is re-learned within seconds from retained and live
    /// messages.
    func flushNow(includingDevices: Bool = false) async {
        // One commit at a time, in the order the batches were taken (`forget` too).
        await commitGate.run { await commitPending(includingDevices: includingDevices) }
    }

    private func commitPending(includingDevices: Bool) async {
        let metrics = context.metrics
        var batch = state.pending.withLock { b -> IngestBatch in defer { b = .init() }; return b }
        let changed = batch.dirtyDevices
        batch.dirtyDevices = []
        let due = rowSchedule.withLock { schedule in
            schedule.add(changed)
            return includingDevices ? schedule.takeAll() : schedule.takeDue(now: .now)
        }
        // Device records are encoded here, as the model has them now: once per write, not once per message.
        if !due.isEmpty {
            let records = state.model.withLock { m in due.compactMap { a in m.devices[a].map { (a, $0) } } }
            let encoder = FleetJSON.makeEncoder()
            for (address, record) in records {
                if let json = try? encoder.encode(record) { batch.devices[address] = json }
            }
        }
        guard !batch.isEmpty else { return }
        batch.writer = context.configuration.instance
        do {
            let inserted = try await store.commit(batch)
            liveness.commitSucceeded()
            metrics.eventsStored.increment(by: Int64(inserted.count))
            metrics.eventsDuplicate.increment(by: Int64(batch.events.count - inserted.count))
            // Session metrics count stored events, so a duplicate or replay counts once.
            for e in inserted {
                if e.type == .sessionStarted { metrics.sessionsStarted.increment() }
                if e.type == .sessionAborted, let reason = e.reason { metrics.aborted(reason.rawValue) }
            }
        } catch {
            liveness.commitFailed()
            context.logger.error("could not commit ingested data; retrying with the next batch", metadata: ["error": "\(error)"])
            state.pending.withLock { $0.requeue(batch) }
        }
    }
}
