import FleetProtocol
import Foundation
import ServiceLifecycle
import Synchronization

/// The one place that decides whether this console does the once-only
/// work: dispatching commands and timing them out, stepping rollouts,
/// raising and clearing alerts, asking for resyncs, deleting old rows.
///
/// A console on SQLite is alone and coordinates from the start. Consoles on
/// PostgreSQL (replicas, or one started beside them by mistake) coordinate
/// while they hold the `coordinator` lease (CoordinatorLease.swift): the
/// service renews it every third of its length, and a console stops
/// coordinating at once when it cannot — or, by its own monotonic clock,
/// when the lease it last renewed could have expired, so a console that was
/// paused or cut off stops by itself before anyone else can take over.
///
/// The services whose work is once-only register as `CoordinatedWork`: each
/// loads what the previous coordinator left before this one acts on it, and
/// forgets what it held when the lease is lost. docs/scaling.md has the
/// whole replica story.
public final class Coordinator: Service, Sendable {
    let context: ConsoleContext
    let lease: CoordinatorLease
    /// Whether this console takes the lease at all (see `usesLease`).
    let usesLease: Bool
    private let state: Mutex<Coordination>
    private let participants = Mutex<[any CoordinatedWork]>([])

    init(context: ConsoleContext, lease: CoordinatorLease) {
        self.context = context
        self.lease = lease
        usesLease = Self.usesLease(context.configuration)
        state = Mutex(usesLease ? Coordination() : Coordination(held: true, until: nil))
        context.metrics.coordinator.set(Double(usesLease ? 0 : 1))
    }

    /// Consoles on PostgreSQL take the lease even when not started as a
    /// replica, so one started beside replicas by mistake does not do their
    /// coordinator's work a second time. On SQLite there is one console.
    static func usesLease(_ configuration: ConsoleConfiguration) -> Bool {
        if configuration.replica != nil { return true }
        if case .postgres = configuration.database { return true }
        return false
    }

    /// Whether this console does the once-only work now.
    public var isCoordinator: Bool {
        state.withLock { c in c.held && (c.until.map { ContinuousClock.now < $0 } ?? true) }
    }

    /// Adds work that changes hands with the lease. Called while the console
    /// is put together, before `run`.
    func register(_ work: any CoordinatedWork) {
        participants.withLock { $0.append(work) }
    }

    /// Takes or renews the lease every third of its length, until shutdown.
    /// The lease counts from before the request was sent, less a sixth of
    /// it as a margin: a renewal that comes back late never extends it.
    public func run() async throws {
        guard usesLease else { return }
        let seconds = context.configuration.leaseSeconds
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.renew(seconds: seconds)
                try? await self.context.clock.sleep(for: .seconds(seconds / 3))
            }
        }
    }

    /// One renewal, and what follows from its answer.
    func renew(seconds: Double) async {
        let asked = ContinuousClock.now
        var held = false
        do {
            held = try await lease.renew(for: seconds)
        } catch {
            // Unsure whether it still holds the lease: it stops, so two never coordinate at once.
            context.logger.warning("cannot renew the coordinator lease; not coordinating until it can", metadata: ["error": "\(error)"])
        }
        let until = asked + .seconds(seconds * 5 / 6)
        let was = state.withLock { $0.held }
        let work = participants.withLock { $0 }
        if held && was {
            state.withLock { $0.until = until }
        } else if held {
            // Load first, coordinate after: nothing acts on a half-loaded state.
            for w in work {
                guard await w.takeOver() else { return } // tried again at the next renewal
            }
            state.withLock { $0 = Coordination(held: true, until: until) }
            context.metrics.coordinator.set(1.0)
            context.logger.notice("this console now coordinates commands, rollouts, alerts and resync requests", metadata: ["instance": "\(context.configuration.instance)"])
            for w in work { w.coordinationBegan() }
        } else if was {
            state.withLock { $0 = Coordination() }
            context.metrics.coordinator.set(0.0)
            for w in work { w.handOver() }
            context.logger.warning("lost the coordinator lease; another console coordinates now")
        }
    }

    /// Gives the lease up on a clean shutdown, so another replica takes over at once.
    func release() async {
        guard usesLease, isCoordinator else { return }
        state.withLock { $0 = Coordination() }
        context.metrics.coordinator.set(0.0)
        await lease.release()
    }
}

/// Work only the coordinator does, which changes hands with the lease.
protocol CoordinatedWork: Sendable {
    /// Loads what the previous coordinator left (merged into what this
    /// console holds, never replacing it); false when it could not, and the
    /// lease is not taken up until the next renewal.
    func takeOver() async -> Bool
    /// This console coordinates now (every `takeOver` succeeded).
    func coordinationBegan()
    /// The lease is lost: what this console knew is the next coordinator's now.
    func handOver()
}

extension CoordinatedWork {
    func takeOver() async -> Bool { true }
    func coordinationBegan() {}
    func handOver() {}
}

/// Whether a console coordinates, and until when its lease is certainly its
/// own (nil: for good — a console on SQLite).
struct Coordination: Sendable {
    var held = false
    var until: ContinuousClock.Instant?
}
