import FleetProtocol
import Foundation
import MassageEngine
import Mosquitto

extension ConsoleCore {
    /// `POST /api/v1/rollouts` (admin): validates the document (every reason
    /// at once, the config against the engine's limits), refuses a target
    /// already in an active rollout (409 naming it), and starts it.
    public func createRollout(_ document: RolloutDocument, by principal: Principal) async throws(ConsoleError) -> Rollout {
        try require(.admin, principal, for: "creating rollouts")
        let problems = document.problems(builtins: ProgramLibrary())
        guard problems.isEmpty else {
            await audit(principal, "rollout.create", targets: "-", outcome: "refused", detail: problems.joined(separator: "; "))
            throw .badRequest(problems.joined(separator: "; "))
        }
        let targets = try rolloutTargets(document.targets, for: principal)
        guard !targets.isEmpty else { throw .badRequest("targets: no known device matches") }
        let now = Date()
        let rollout = try rollouts.withLock { all throws(ConsoleError) -> Rollout in
            let wanted = Set(targets)
            for other in all.values where other.state.isActive {
                let busy = other.devices.compactMap(\.address).filter { wanted.contains($0) }
                if let first = busy.first {
                    throw ConsoleError.conflict("rollout \"\(other.id)\" (\(other.name)) is \(other.state.rawValue) on \(busy.count) of these devices, e.g. \(first); pause or abort it first")
                }
            }
            let r = Rollout(id: "ro-\(UUID().uuidString.lowercased().prefix(12))", document: document, targets: targets, createdBy: principal.name, now: now)
            all[r.id] = r
            return r
        }
        await persist(rollout)
        await audit(principal, "rollout.create", targets: describeTargets(document.targets), outcome: "started", detail: "\(rollout.id): \(rollout.waves.map { "\($0.size)" }.joined(separator: "+")) devices")
        rolloutSignal.yield()
        return rollout
    }

    func rolloutTargets(_ t: RolloutDocument.Targets, for principal: Principal) throws(ConsoleError) -> [DeviceAddress] {
        let known = model.withLock { Set($0.devices.keys) }
        var chosen = Set<DeviceAddress>()
        if t.all == true { chosen = known }
        for site in t.sites ?? [] { chosen.formUnion(known.filter { $0.site.rawValue == site }) }
        for d in t.devices ?? [] {
            let parts = d.split(separator: "/").map(String.init)
            guard parts.count == 2, let a = try? DeviceAddress(site: parts[0], device: parts[1]) else { continue }
            guard known.contains(a) else { throw .notFound("device \(a) is not known to this console") }
            chosen.insert(a)
        }
        for a in chosen where !principal.canSee(site: a.site.rawValue) {
            throw .forbidden("token '\(principal.name)' may not act on site \"\(a.site)\"")
        }
        return chosen.sorted()
    }

    private func describeTargets(_ t: RolloutDocument.Targets) -> String {
        if t.all == true { return "all" }
        return ((t.sites ?? []).map { "site=\($0)" } + (t.devices ?? [])).joined(separator: ",")
    }

    public func rolloutList(for principal: Principal) -> [Rollout] {
        rollouts.withLock { Array($0.values) }.filter { r in r.devices.contains { principal.canSee(site: $0.site) } }
            .sorted { $0.createdAt > $1.createdAt }
    }

    public func rollout(id: String, for principal: Principal) throws(ConsoleError) -> Rollout {
        guard let r = rollouts.withLock({ $0[id] }), r.devices.contains(where: { principal.canSee(site: $0.site) }) else {
            throw .notFound("rollout \"\(id)\" not found")
        }
        return r
    }

    /// pause / resume / abort (admin).
    public func controlRollout(id: String, action: String, by principal: Principal) async throws(ConsoleError) -> Rollout {
        try require(.admin, principal, for: "\(action) of a rollout")
        _ = try rollout(id: id, for: principal)
        let now = Date()
        let (updated, actions) = try rollouts.withLock { all throws(ConsoleError) -> (Rollout, [RolloutAction]) in
            guard var r = all[id] else { throw .notFound("rollout \"\(id)\" not found") }
            var actions: [RolloutAction] = []
            switch action {
            case "pause":
                guard r.state == .running || r.state == .waitingWindow else { throw .conflict("rollout \(id) is \(r.state.rawValue); only a running rollout can be paused") }
                r.state = .paused
                r.reason = "paused by \(principal.name)"
            case "resume":
                guard r.state == .paused else { throw .conflict("rollout \(id) is \(r.state.rawValue); only a paused rollout can be resumed") }
                r.state = .running
                r.reason = nil
            case "abort":
                guard r.state.isActive else { throw .conflict("rollout \(id) is \(r.state.rawValue) and can no longer be aborted") }
                actions = RolloutRunner.abort(&r, reason: "aborted by \(principal.name)", now: now)
            default:
                throw .notFound("unknown rollout action \"\(action)\"; expected pause, resume or abort")
            }
            all[id] = r
            return (r, actions)
        }
        await persist(updated)
        await audit(principal, "rollout.\(action)", targets: id, outcome: updated.state.rawValue)
        await perform(actions, rollout: id)
        rolloutSignal.yield()
        return updated
    }

    private func persist(_ r: Rollout) async {
        do { try await store.saveRollout(r) } catch {
            logger.error("could not persist a rollout", metadata: ["rollout.id": "\(r.id)", "error": "\(error)"])
        }
    }

    /// Steps every rollout that can still change, twice a second or when signalled.
    func rolloutLoop() async {
        await withDiscardingTaskGroup { group in
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(500))
                    self.rolloutSignal.yield()
                }
            }
            for await _ in rolloutWakeups { await stepRollouts() }
            group.cancelAll()
        }
    }

    func stepRollouts() async {
        let now = Date()
        let devices = model.withLock { $0.devices }
        let observe = { (a: DeviceAddress) -> RolloutObservation? in
            guard let d = devices[a] else { return nil }
            return RolloutObservation(online: d.online, desired: d.desired, reported: d.reported, telemetryAt: d.telemetryAt,
                                      faults: d.faults, timeZone: self.configuration.timeZone(ofSite: a.site.rawValue))
        }
        let results = rollouts.withLock { all -> [(Rollout, [RolloutAction])] in
            var out: [(Rollout, [RolloutAction])] = []
            for (id, var r) in all where r.state.isActive || r.devices.contains(where: { [.offline, .applying, .deferred, .verifying].contains($0.state) }) {
                let before = r
                let actions = RolloutRunner.step(&r, now: now, observe: observe)
                if r != before || !actions.isEmpty {
                    all[id] = r
                    out.append((r, actions))
                }
            }
            return out
        }
        for (r, actions) in results {
            await persist(r)
            await perform(actions, rollout: r.id)
        }
    }

    func perform(_ actions: [RolloutAction], rollout id: String) async {
        var writes: [(DeviceAddress, DesiredConfig)] = []
        for action in actions {
            switch action {
            case .audit(let text):
                logger.info("\(text)")
                try? await store.audit(AuditDraft(actor: "rollout", action: "rollout.transition", targets: id, outcome: text))
            case .writeDesired(let address, let desired):
                writes.append((address, desired))
            }
        }
        guard !writes.isEmpty else { return }
        // Record them as desired at once, so the next step sees the new versions.
        model.withLock { m in
            for (address, desired) in writes {
                var r = m.record(address)
                r.desired = desired
                r.desiredSince = Date()
                m.devices[address] = r
            }
        }
        // A wave's writes go out together, each acknowledged by the broker.
        await withTaskGroup(of: Void.self) { group in
            for (address, desired) in writes {
                group.addTask {
                    do {
                        try await self.client.publish(self.configuration.topicRoot.topic(.configDesired, for: address), payload: Array(try FleetJSON.encode(desired)),
                                                      qos: .atLeastOnce, retain: true, properties: MQTTProperties(contentType: "application/json"))
                    } catch {
                        self.logger.warning("could not publish a desired config; the device will time out and count as failed", metadata: ["device": "\(address)", "error": "\(error)"])
                    }
                }
            }
        }
    }
}
