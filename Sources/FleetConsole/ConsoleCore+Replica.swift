import FleetProtocol
import Foundation
import Mosquitto

/// Replicas: several consoles on one PostgreSQL database (docs/scaling.md).
///
/// - Ingestion is split: telemetry and events come through
///   `$share/console/…`, so each message reaches one replica. Retained,
///   low-rate topics (status, usage, config) reach every replica, so each
///   knows presence, usage and configs first-hand.
/// - The device model is shared through the device rows: each replica
///   writes the devices it heard from every second and folds in the rows
///   the others wrote (`DeviceRecord.merge`), facet by facet, newest wins.
/// - Work that must happen once — dispatching commands and timing them out,
///   stepping rollouts, raising and clearing alerts, asking for resyncs —
///   is done by the replica holding the `coordinator` lease. It renews the
///   lease every third of its length and stops coordinating at once if it
///   cannot; a replica that dies hands over once the lease expires.
/// - Storage stays exactly-once by the event table's unique key; gaps are
///   found in the event table, not in one replica's partial view.
extension ConsoleCore {
    /// The shared-subscription group every replica joins.
    static let shareGroup = "console"

    var isReplica: Bool { configuration.replica != nil }

    /// Consoles on PostgreSQL take the lease even when not started as a
    /// replica, so one started beside replicas by mistake does not do their
    /// coordinator's work a second time. On SQLite there is one console.
    static func usesLease(_ configuration: ConsoleConfiguration) -> Bool {
        if configuration.replica != nil { return true }
        if case .postgres = configuration.database { return true }
        return false
    }

    /// Whether this console does the once-only work now: always on SQLite;
    /// on PostgreSQL while it holds the lease — and only until the lease it
    /// last renewed could have expired by this process's own clock, so a
    /// console that was paused or cut off stops by itself before anyone
    /// else can take over.
    var isCoordinator: Bool {
        coordinating.withLock { c in c.held && (c.until.map { ContinuousClock.now < $0 } ?? true) }
    }

    /// What a console subscribes to: everything under the root, or for a
    /// replica the high-rate device topics through the shared group; and its
    /// reply topics, without the broker's retained copies (a retained reply
    /// is never a live answer, and the console drops one anyway).
    var subscriptions: [Subscription] {
        let root = configuration.topicRoot
        guard isReplica else {
            return [Subscription(root.everythingFilter, qos: .atLeastOnce), Subscription(replyFilter, qos: .atLeastOnce, retainHandling: .never)]
        }
        let shared: [DeviceTopicKind] = [.telemetry, .events]
        let everyone: [DeviceTopicKind] = [.status, .usage, .configReported, .configDesired]
        // (The group is a constant that the contract's rules accept, so the `try?` never drops one.)
        return shared.compactMap { (try? TopicRoot.sharedSubscription(group: Self.shareGroup, filter: root.filter($0))).map { Subscription($0, qos: .atLeastOnce) } }
            + everyone.map { Subscription(root.filter($0), qos: .atLeastOnce) }
            + [Subscription(replyFilter, qos: .atLeastOnce, retainHandling: .never)]
    }

    // MARK: The coordinator lease

    /// Takes or renews the coordinator lease every third of its length.
    /// The lease counts from before the request was sent, less a sixth of
    /// it as a margin: a renewal that comes back late never extends it.
    func leaseLoop() async {
        guard Self.usesLease(configuration) else { return }
        let seconds = configuration.leaseSeconds
        while !Task.isCancelled {
            let asked = ContinuousClock.now
            var held = false
            do {
                held = try await lease.renew(for: seconds)
            } catch {
                // Unsure whether it still holds the lease: it stops, so two never coordinate at once.
                logger.warning("cannot renew the coordinator lease; not coordinating until it can", metadata: ["error": "\(error)"])
            }
            let until = asked + .seconds(seconds * 5 / 6)
            let was = coordinating.withLock { $0.held }
            if held && was {
                coordinating.withLock { $0.until = until }
            } else if held {
                // Load first, coordinate after: nothing acts on a half-loaded state.
                if await loadCoordinatorState() {
                    coordinating.withLock { $0 = Coordination(held: true, until: until) }
                    metrics.coordinator.set(1.0)
                    logger.notice("this console now coordinates commands, rollouts, alerts and resync requests", metadata: ["instance": "\(configuration.instance)"])
                    rolloutSignal.yield()
                    work.yield(.dispatchAll)
                }
            } else if was {
                coordinating.withLock { $0 = Coordination() }
                metrics.coordinator.set(0.0)
                // What it knew of the commands is the next coordinator's now: a late
                // reply here must not overwrite the record that one keeps.
                commands.withLock { $0 = [:] }
                logger.warning("lost the coordinator lease; another console coordinates now")
            }
            try? await clock.sleep(for: .seconds(seconds / 3))
        }
    }

    /// What the previous coordinator left, from the database: the
    /// unfinished commands (a copy it sent without an answer is sent again —
    /// the device answers a repeated command id with its first reply and
    /// runs nothing twice) and the active alerts (so none is raised twice).
    /// Merged into what this console holds, never replacing it.
    func loadCoordinatorState() async -> Bool {
        do {
            let unfinished = try await store.unfinishedCommands()
            let active = try await store.alerts(activeOnly: true, limit: 10_000)
            commands.withLock { all in
                for var record in unfinished where all[record.id] == nil {
                    for i in record.results.indices where record.results[i].state == .sent { record.results[i].state = .queued }
                    all[record.id] = record
                }
            }
            adoptedCommands.withLock { $0.formUnion(unfinished.map(\.id)) }
            replaceActiveAlerts(active)
            return true
        } catch {
            logger.error("could not load the previous coordinator's work; trying again at the next renewal", metadata: ["error": "\(error)"])
            return false
        }
    }

    func replaceActiveAlerts(_ alerts: [AlertRecord]) {
        model.withLock { m in
            m.activeAlerts = [:]
            for alert in alerts {
                m.activeAlerts[.init(site: alert.site, device: alert.device, type: alert.type)] =
                    .init(id: alert.id, severity: alert.severity, message: alert.message, lastSeen: clock.now())
            }
        }
    }

    /// Gives the lease up on a clean shutdown, so another replica takes over at once.
    func releaseCoordination() async {
        guard Self.usesLease(configuration), isCoordinator else { return }
        coordinating.withLock { $0 = Coordination() }
        metrics.coordinator.set(0.0)
        await lease.release()
    }

    // MARK: Commands submitted to other replicas

    /// The coordinator takes up commands another replica accepted (they
    /// wait `queued` in the database) and sends them.
    func adoptSubmittedCommands() async {
        guard Self.usesLease(configuration), isCoordinator else { return }
        guard let unfinished = try? await store.unfinishedCommands() else { return }
        let new = adoptedCommands.withLock { seen in
            unfinished.filter { seen.insert($0.id).inserted }
        }
        guard !new.isEmpty else { return }
        commands.withLock { all in for record in new where all[record.id] == nil { all[record.id] = record } }
        for record in new {
            for result in record.results where result.state == .queued {
                if let address = try? DeviceAddress(site: result.site, device: result.device) { await send(commandID: record.id, to: address) }
            }
        }
    }

    // MARK: The shared device model

    /// Every second: fold in the device rows the other replicas wrote.
    func deviceSyncLoop() async {
        guard isReplica else { return }
        var since = 0.0
        while !Task.isCancelled {
            do {
                // Overlap by two seconds: a row committed late with an earlier time is still read.
                let (records, newest) = try await store.devicesChanged(since: max(0, since - 2), excludingWriter: configuration.instance)
                since = newest
                model.withLock { m in
                    for other in records {
                        guard let address = try? DeviceAddress(site: other.site, device: other.device) else { continue }
                        m.adopt(other, at: address)
                    }
                }
            } catch {
                logger.warning("cannot read the other replicas' device rows", metadata: ["error": "\(error)"])
            }
            try? await clock.sleep(for: .seconds(1))
        }
    }

    // MARK: Gaps, from the event table

    /// The coordinator's gap check for replicas: holes in the event table
    /// (events of the last hour's epochs) still there at the next look,
    /// `health.resync_interval_s` later, are asked for — at most
    /// `FleetModel.maxResyncAttempts` times while they stay open. A hole
    /// seen once may be an event another replica has not committed yet.
    func scanForGaps(now: Date) async {
        guard let found = try? await store.missingEvents(within: 3600, limit: FleetModel.maxHolesPerDevice, now: now) else { return }
        let due = model.withLock { m -> [DeviceAddress] in
            var due: [DeviceAddress] = []
            for (address, keys) in found {
                let holes = Set(keys)
                let before = m.holes[address] ?? []
                m.holes[address] = holes
                if !holes.isDisjoint(with: before), m.resyncAttempts[address, default: 0] < FleetModel.maxResyncAttempts {
                    m.resyncAttempts[address, default: 0] += 1
                    m.devices[address]?.lastResyncRequest = now
                    due.append(address)
                }
            }
            for address in m.holes.keys where found[address] == nil {
                m.holes[address] = nil
                m.resyncAttempts[address] = nil
            }
            return due
        }
        for address in due {
            logger.notice("events missing from the event table: asking the device to resync", metadata: ["device": "\(address)"])
            await sendResync(to: address)
        }
    }
}

/// Whether a console coordinates, and until when its lease is certainly its
/// own (nil: for good — a console on SQLite).
struct Coordination: Sendable {
    var held = false
    var until: ContinuousClock.Instant?
}
