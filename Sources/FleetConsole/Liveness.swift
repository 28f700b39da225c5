import Foundation
import Synchronization

/// Whether the console's ingest and store are making progress, for
/// `GET /healthz` and the systemd watchdog. Kept in atomics, never behind
/// the fleet model's lock: when ingest is stuck it is stuck *holding* that
/// lock, and a health check that waited for it would hang too instead of
/// saying so.
///
/// Ingest is **stalled** when it has been applying one message for longer
/// than `stallAfter` (an idle ingest, with nothing to apply, is healthy).
/// The store is **failing** when commits have failed, with none succeeding,
/// for longer than `storeFailingAfter` (ingest keeps the batch and retries).
final class Liveness: Sendable {
    /// Monotonic time origin; every instant below is nanoseconds since it.
    private let origin = ContinuousClock.now
    /// When the message being applied began (0: none is).
    private let applyingSince = Atomic<Int64>(0)
    /// Messages applied since start.
    private let applied = Atomic<Int64>(0)
    /// When commits began failing (0: the last commit succeeded).
    private let storeFailingSince = Atomic<Int64>(0)
    /// Commits that succeeded since start.
    private let commits = Atomic<Int64>(0)

    /// Ingest is stalled after one message took this long (10 s by default).
    let stallAfter: Duration
    /// The store is failing after commits failed this long (30 s by default).
    let storeFailingAfter: Duration

    init(stallAfter: Duration = .seconds(10), storeFailingAfter: Duration = .seconds(30)) {
        self.stallAfter = stallAfter
        self.storeFailingAfter = storeFailingAfter
    }

    /// Nanoseconds since `origin`, at least 1 (0 means "not set").
    private func stamp(_ instant: ContinuousClock.Instant = .now) -> Int64 {
        let d = origin.duration(to: instant).components
        return max(1, d.seconds &* 1_000_000_000 &+ d.attoseconds / 1_000_000_000)
    }

    /// Runs `apply` on one message, marking ingest busy while it runs.
    func applying<T>(_ apply: () -> T) -> T {
        applyingSince.store(stamp(), ordering: .relaxed)
        defer {
            applyingSince.store(0, ordering: .relaxed)
            applied.add(1, ordering: .relaxed)
        }
        return apply()
    }

    func commitSucceeded() {
        storeFailingSince.store(0, ordering: .relaxed)
        commits.add(1, ordering: .relaxed)
    }

    func commitFailed() {
        _ = storeFailingSince.compareExchange(expected: 0, desired: stamp(), ordering: .relaxed)
    }

    struct Report: Sendable, Equatable {
        /// Seconds the current message has been applied for (0 when idle).
        var ingestBusySeconds: Double
        var applied: Int64
        /// Seconds commits have been failing (0 when the last succeeded).
        var storeFailingSeconds: Double
        var commits: Int64
        var ingestStalled: Bool
        var storeFailing: Bool
        var healthy: Bool { !ingestStalled && !storeFailing }
    }

    func report(now: ContinuousClock.Instant = .now) -> Report {
        let current = stamp(now)
        func seconds(since start: Int64) -> Double { start == 0 ? 0 : Double(max(0, current - start)) / 1e9 }
        let busy = seconds(since: applyingSince.load(ordering: .relaxed))
        let failing = seconds(since: storeFailingSince.load(ordering: .relaxed))
        return Report(
            ingestBusySeconds: busy, applied: applied.load(ordering: .relaxed),
            storeFailingSeconds: failing, commits: commits.load(ordering: .relaxed),
            ingestStalled: busy > Self.seconds(stallAfter), storeFailing: failing > Self.seconds(storeFailingAfter))
    }

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}

/// `GET /healthz`.
public struct ConsoleHealth: Codable, Sendable, Equatable {
    public struct Ingest: Codable, Sendable, Equatable {
        /// `ok`, or `stalled` (one message applied for more than 10 s).
        public var status: String
        /// Messages applied since start.
        public var applied: Int64
        /// Seconds the message being applied has taken so far (0 when idle).
        public var busySeconds: Double

        enum CodingKeys: String, CodingKey { case status, applied, busySeconds = "busy_s" }
    }

    public struct Store: Codable, Sendable, Equatable {
        /// `ok`, or `failing` (no commit succeeded for more than 30 s).
        public var status: String
        /// Batches committed since start.
        public var commits: Int64
        /// Seconds commits have been failing (0 when the last succeeded).
        public var failingSeconds: Double

        enum CodingKeys: String, CodingKey { case status, commits, failingSeconds = "failing_s" }
    }

    /// `ok`, or `failing` when ingest is stalled or the store failing.
    public var status: String
    public var ingest: Ingest
    public var store: Store
    /// Whether the MQTT connection is up (reported; a broker outage is not
    /// the console's failure, so it does not change `status`).
    public var brokerConnected: Bool

    enum CodingKeys: String, CodingKey { case status, ingest, store, brokerConnected = "broker_connected" }
}

extension ConsoleCore {
    /// What `GET /healthz` says (see `Liveness`).
    public func health() -> ConsoleHealth {
        let r = liveness.report()
        return ConsoleHealth(
            status: r.healthy ? "ok" : "failing",
            ingest: .init(status: r.ingestStalled ? "stalled" : "ok", applied: r.applied, busySeconds: (r.ingestBusySeconds * 1000).rounded() / 1000),
            store: .init(status: r.storeFailing ? "failing" : "ok", commits: r.commits, failingSeconds: (r.storeFailingSeconds * 1000).rounded() / 1000),
            brokerConnected: client.isConnected)
    }
}
