import FleetProtocol
import Foundation
import MassageEngine
import Mosquitto
import ServiceLifecycle
import Synchronization

/// Rollouts: the API's create, list and control, and the coordinator's
/// stepping of every rollout that can still change, twice a second or when
/// signalled (a rollout changed hands or state, or ingest saw a device of a
/// rollout in flight move: `deviceMoved`). What a step does is decided by `RolloutRunner` (pure: a
/// rollout, now and what the devices report in, actions out); this service
/// gathers the inputs, records the result in one store transaction (two
/// consoles never step or start overlapping rollouts) and performs the
/// actions: audit lines and desired configs published retained.
final class RolloutService: Service, CoordinatedWork, Sendable {
    let context: ConsoleContext
    let state: FleetState
    let store: any RolloutStore
    let client: MQTTClient
    let coordinator: Coordinator
    let audit: AuditTrail
    private let signal: AsyncStream<Void>.Continuation
    private let wakeups: AsyncStream<Void>
    /// Set by each step: some device of a rollout is being written or verified.
    private let inFlight = Atomic<Bool>(false)
    /// When ingest last woke the stepping (milliseconds on the console's clock).
    private let lastMoved = Atomic<Int64>(0)
    /// Ingest wakes the stepping at most this often (a step reads every
    /// rollout and writes one transaction; 10,000 devices report at once).
    static let movedInterval: Int64 = 100

    init(context: ConsoleContext, state: FleetState, store: any RolloutStore, client: MQTTClient, coordinator: Coordinator, audit: AuditTrail) {
        self.context = context
        self.state = state
        self.store = store
        self.client = client
        self.coordinator = coordinator
        self.audit = audit
        (wakeups, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// A new coordinator steps at once what the last one left.
    func coordinationBegan() { signal.yield() }

    /// Ingest: a device reported a config or sent telemetry. While a rollout
    /// is writing or verifying devices, the next step comes now (at most
    /// every `movedInterval` ms), not at the next half-second tick: a wave
    /// ends when its last device is healthy, not up to a tick later. One
    /// atomic load when no rollout is in flight.
    func deviceMoved(now: Date) {
        guard inFlight.load(ordering: .relaxed) else { return }
        let ms = Int64((now.timeIntervalSince1970 * 1000).rounded())
        let last = lastMoved.load(ordering: .relaxed)
        guard ms - last >= Self.movedInterval,
              lastMoved.compareExchange(expected: last, desired: ms, ordering: .relaxed).exchanged else { return }
        signal.yield()
    }

    /// `POST /api/v1/rollouts` (admin): validates the document (every reason
    /// at once, the config against the engine's limits), refuses a target
    /// already in an active rollout (409 naming it), and starts it.
    func create(_ document: RolloutDocument, by principal: Principal) async throws(ConsoleError) -> Rollout {
        try principal.require(.admin, for: "creating rollouts")
        let problems = document.problems(builtins: ProgramLibrary())
        guard problems.isEmpty else {
            await audit.record(principal, "rollout.create", targets: "-", outcome: "refused", detail: problems.joined(separator: "; "))
            throw .badRequest(problems.joined(separator: "; "))
        }
        let targets = try rolloutTargets(document.targets, for: principal)
        guard !targets.isEmpty else { throw .badRequest("targets: no known device matches") }
        let candidate = Rollout(id: "ro-\(UUID().uuidString.lowercased().prefix(12))", document: document, targets: targets, createdBy: principal.name, now: context.clock.now())
        let wanted = Set(targets)
        // Checked and recorded in one store transaction: two consoles (replicas) never start overlapping rollouts.
        let rollout: Rollout
        do {
            rollout = try await store.updateRollouts { all in
                for other in all where other.state.isActive {
                    let busy = other.devices.compactMap(\.address).filter { wanted.contains($0) }
                    if let first = busy.first {
                        throw ConsoleError.conflict("rollout \"\(other.id)\" (\(other.name)) is \(other.state.rawValue) on \(busy.count) of these devices, e.g. \(first); pause or abort it first")
                    }
                }
                all.append(candidate)
                return candidate
            }
        } catch let error as ConsoleError {
            throw error
        } catch {
            throw .unavailable("the rollout could not be recorded: \(error)")
        }
        await audit.record(principal, "rollout.create", targets: describeTargets(document.targets), outcome: "started", detail: "\(rollout.id): \(rollout.waves.map { "\($0.size)" }.joined(separator: "+")) devices")
        signal.yield()
        return rollout.visible(to: principal) ?? rollout
    }

    /// The devices a rollout document targets. A site-limited token is
    /// refused before anything is looked up, so its answer never tells
    /// whether another site or device exists: `all: true` (every site) and
    /// any site or device outside its list are 403.
    func rolloutTargets(_ t: RolloutDocument.Targets, for principal: Principal) throws(ConsoleError) -> [DeviceAddress] {
        if t.all == true, let sites = principal.sites {
            throw .forbidden("targets.all: token '\(principal.name)' is limited to \(sites.sorted().joined(separator: ", ")); name those sites in targets.sites instead")
        }
        for site in t.sites ?? [] where !principal.canSee(site: site) {
            throw .forbidden("token '\(principal.name)' may not act on site \"\(site)\"")
        }
        // A revoked device is in no rollout (issue 20, item 18).
        let (known, revoked) = state.model.withLock { m in
            (Set(m.devices.filter { $0.value.revokedAt == nil }.keys), Set(m.devices.filter { $0.value.revokedAt != nil }.keys))
        }
        var chosen = Set<DeviceAddress>()
        if t.all == true { chosen = known }
        for site in t.sites ?? [] { chosen.formUnion(known.filter { $0.site.rawValue == site }) }
        for d in t.devices ?? [] {
            let parts = d.split(separator: "/").map(String.init)
            guard parts.count == 2, let a = try? DeviceAddress(site: parts[0], device: parts[1]) else { continue }
            guard principal.canSee(site: a.site.rawValue) else { throw .forbidden("token '\(principal.name)' may not act on site \"\(a.site)\"") }
            guard !revoked.contains(a) else { throw .conflict("device \(a) was forgotten and is revoked: it is in no rollout until it connects again with new credentials") }
            guard known.contains(a) else { throw .notFound("device \(a) is not known to this console") }
            chosen.insert(a)
        }
        return chosen.sorted()
    }

    private func describeTargets(_ t: RolloutDocument.Targets) -> String {
        if t.all == true { return "all" }
        return ((t.sites ?? []).map { "site=\($0)" } + (t.devices ?? [])).joined(separator: ",")
    }

    /// Rollouts are read from the store, where every console (replica) records
    /// them; each as `principal` may see it (`Rollout.visible(to:)`).
    func list(for principal: Principal) async throws(ConsoleError) -> [Rollout] {
        try await storedRollouts().compactMap { $0.visible(to: principal) }.sorted { $0.createdAt > $1.createdAt }
    }

    /// One rollout as `principal` may see it; 404 when it has no device at the principal's sites.
    func rollout(id: String, for principal: Principal) async throws(ConsoleError) -> Rollout {
        guard let r = try await storedRollouts().first(where: { $0.id == id })?.visible(to: principal) else {
            throw .notFound("rollout \"\(id)\" not found")
        }
        return r
    }

    private func storedRollouts() async throws(ConsoleError) -> [Rollout] {
        do { return try await store.rollouts() } catch { throw .unavailable("rollouts cannot be read: \(error)") }
    }

    /// pause / resume / abort (admin).
    func control(id: String, action: String, by principal: Principal) async throws(ConsoleError) -> Rollout {
        try principal.require(.admin, for: "\(action) of a rollout")
        guard ["pause", "resume", "abort"].contains(action) else { throw .notFound("unknown rollout action \"\(action)\"; expected pause, resume or abort") }
        let seen = try await rollout(id: id, for: principal)
        // Pausing, resuming or aborting (and rolling back) acts on every
        // device of the rollout: only a token that may act on all of them can.
        if seen.partial {
            throw .forbidden("rollout \(id) also has devices at sites token '\(principal.name)' may not act on; an admin of every site it spans can \(action) it")
        }
        let now = context.clock.now()
        let name = principal.name
        let changed: (Rollout, [RolloutAction])
        do {
            changed = try await store.updateRollouts { all in
                guard let index = all.firstIndex(where: { $0.id == id }) else {
                    throw ConsoleError.conflict("rollout \(id) is \(seen.state.rawValue) and can no longer be paused, resumed or aborted")
                }
                var r = all[index]
                var actions: [RolloutAction] = []
                switch action {
                case "pause":
                    guard r.state == .running || r.state == .waitingWindow else { throw ConsoleError.conflict("rollout \(id) is \(r.state.rawValue); only a running rollout can be paused") }
                    r.state = .paused
                    r.reason = "paused by \(name)"
                case "resume":
                    guard r.state == .paused else { throw ConsoleError.conflict("rollout \(id) is \(r.state.rawValue); only a paused rollout can be resumed") }
                    r.state = .running
                    r.reason = nil
                case "abort":
                    guard r.state.isActive else { throw ConsoleError.conflict("rollout \(id) is \(r.state.rawValue) and can no longer be aborted") }
                    actions = RolloutRunner.abort(&r, reason: "aborted by \(name)", now: now)
                default:
                    throw ConsoleError.notFound("unknown rollout action \"\(action)\"; expected pause, resume or abort")
                }
                all[index] = r
                return (r, actions)
            }
        } catch let error as ConsoleError {
            throw error
        } catch {
            throw .unavailable("the rollout could not be updated: \(error)")
        }
        let (updated, actions) = changed
        await audit.record(principal, "rollout.\(action)", targets: id, outcome: updated.state.rawValue)
        await perform(actions, rollout: id)
        signal.yield()
        return updated.visible(to: principal) ?? updated
    }

    /// Steps every rollout that can still change, twice a second or when signalled.
    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask {
                    while !Task.isCancelled {
                        try? await self.context.clock.sleep(for: .milliseconds(500))
                        self.signal.yield()
                    }
                }
                for await _ in self.wakeups { await self.step() }
                group.cancelAll()
            }
        }
    }

    /// The coordinator steps every rollout that can still change, in one store transaction.
    func step() async {
        guard coordinator.isCoordinator else { return }
        let now = context.clock.now()
        let devices = state.model.withLock { $0.devices }
        let configuration = context.configuration
        let observe = { @Sendable (a: DeviceAddress) -> RolloutObservation? in
            guard let d = devices[a] else { return nil }
            return RolloutObservation(online: d.online, desired: d.desired, reported: d.reported, telemetryAt: d.telemetryAt,
                                      faults: d.faults, timeZone: configuration.timeZone(ofSite: a.site.rawValue), reportedAt: d.reportedAt)
        }
        let results: [(Rollout, [RolloutAction])]
        do {
            results = try await store.updateRollouts { all in
                var out: [(Rollout, [RolloutAction])] = []
                for i in all.indices where all[i].canChange {
                    let before = all[i]
                    let actions = RolloutRunner.step(&all[i], now: now, observe: observe)
                    if all[i] != before || !actions.isEmpty { out.append((all[i], actions)) }
                }
                let moving = all.contains { r in r.canChange && r.devices.contains { $0.state == .applying || $0.state == .verifying } }
                self.inFlight.store(moving, ordering: .relaxed)
                return out
            }
        } catch {
            context.logger.error("could not step the rollouts; trying again shortly", metadata: ["error": "\(error)"])
            return
        }
        for (r, actions) in results {
            await perform(actions, rollout: r.id)
        }
    }

    func perform(_ actions: [RolloutAction], rollout id: String) async {
        var writes: [(DeviceAddress, DesiredConfig)] = []
        for action in actions {
            switch action {
            case .audit(let text):
                context.logger.info("\(text)")
                await audit.record(AuditDraft(actor: "rollout", action: "rollout.transition", targets: id, outcome: text))
            case .writeDesired(let address, let desired):
                writes.append((address, desired))
            }
        }
        guard !writes.isEmpty else { return }
        // Record them as desired at once, so the next step sees the new versions.
        let now = context.clock.now()
        for (address, desired) in writes { state.setDesired(desired, for: address, at: now, onlyIfNewVersion: false) }
        // A wave's writes go out together, each acknowledged by the broker.
        await withTaskGroup(of: Void.self) { group in
            for (address, desired) in writes {
                group.addTask {
                    do {
                        try await self.client.publish(self.context.configuration.topicRoot.topic(.configDesired, for: address), payload: Array(try FleetJSON.encode(desired)),
                                                      qos: .atLeastOnce, retain: true, properties: MQTTProperties(contentType: "application/json"))
                    } catch {
                        self.context.logger.warning("could not publish a desired config; the device will time out and count as failed", metadata: ["device": "\(address)", "error": "\(error)"])
                    }
                }
            }
        }
    }
}
