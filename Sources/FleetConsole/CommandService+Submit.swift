import FleetProtocol
import Foundation

/// The API's side of commands: validating a submission, resolving its
/// targets within the caller's sites, recording it, and reading one back.
extension CommandService {
    /// `POST /api/v1/commands`: validates, resolves targets within the
    /// caller's sites, records a result per device (persisted), and sends to
    /// the devices that are online; the others stay queued until they return
    /// or the command expires.
    func submit(_ submission: CommandSubmission, by principal: Principal) async throws(ConsoleError) -> CommandRecord {
        try principal.require(.operator, for: "sending commands")
        let action = Action(rawValue: submission.action)
        let request: CommandRequest
        do { request = try CommandRequest(action: action, params: submission.params ?? .object([:])) } catch {
            await audit.record(principal, "command.\(submission.action)", targets: describe(submission.targets), outcome: "refused", detail: error.message)
            throw .badRequest(error.message)
        }
        let ttl = submission.ttlSeconds ?? 60
        guard ttl >= 1, ttl <= 7 * 86_400 else { throw .badRequest("ttl_s: expected seconds from 1 to 604800, got \(ttl)") }
        if Command.startingActions.contains(action), ttl > context.configuration.health.maxStartTTLSeconds {
            throw .badRequest("ttl_s: \(action) may wait at most \(Int(context.configuration.health.maxStartTTLSeconds)) s for a device (health.max_start_ttl_s), got \(ttl): a massager that returns later may have someone else seated")
        }
        let targets = try resolveTargets(submission.targets, for: principal)
        guard !targets.isEmpty else {
            throw .badRequest("targets: no device matches (site \(submission.targets.site ?? "any"), devices \(submission.targets.devices?.joined(separator: ",") ?? "all")\(submission.targets.idleOnly == true ? ", idle and online only" : ""))")
        }
        let now = context.clock.now()
        var record = CommandRecord(id: "cmd-\(UUID().uuidString.lowercased())", action: action.rawValue, params: request.params,
                                   createdBy: principal.name, createdAt: now, expiresAt: now.addingTimeInterval(ttl),
                                   results: targets.map { CommandTargetResult(site: $0.site.rawValue, device: $0.device.rawValue, state: .queued, updatedAt: now,
                                                                              nonce: UUID().uuidString.lowercased()) })
        do { try await store.saveCommand(record) } catch {
            throw .unavailable("the command could not be recorded: \(error)")
        }
        await audit.record(principal, "command.\(action.rawValue)", targets: targets.map(\.description).joined(separator: ","), outcome: "accepted", detail: record.id)
        // The coordinator sends it now; another replica leaves it queued in the
        // database, where the coordinator takes it up within a second.
        guard coordinator.isCoordinator else { return Self.redacted(record) }
        adopted.withLock { _ = $0.insert(record.id) }
        inFlight.withLock { $0[record.id] = record }
        await sendAll(targets.map { (record.id, $0) })
        record = inFlight.withLock { $0[record.id] } ?? record
        return Self.redacted(record)
    }

    /// The record as the API shows it: without the per-device nonces.
    static func redacted(_ record: CommandRecord) -> CommandRecord {
        var r = record
        for i in r.results.indices { r.results[i].nonce = nil }
        return r
    }

    private func describe(_ t: CommandSubmission.Targets) -> String {
        [t.site.map { "site=\($0)" }, t.devices.map { "devices=\($0.joined(separator: ","))" }, t.idleOnly == true ? "idle_only" : nil].compactMap { $0 }.joined(separator: " ")
    }

    func resolveTargets(_ t: CommandSubmission.Targets, for principal: Principal) throws(ConsoleError) -> [DeviceAddress] {
        if let site = t.site {
            guard Identifier.isValid(site) else { throw .badRequest("targets.site: \"\(site)\" is not a valid site id") }
            guard principal.canSee(site: site) else { throw .forbidden("token '\(principal.name)' may not act on site \"\(site)\"") }
        }
        let fleet = state.model.withLock { $0.devices }
        var chosen: [DeviceAddress] = []
        if let devices = t.devices {
            guard !devices.isEmpty else { throw .badRequest("targets.devices: expected at least one device") }
            for name in devices {
                let parts = name.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
                let address: DeviceAddress
                if parts.count == 2, let a = try? DeviceAddress(site: parts[0], device: parts[1]) {
                    address = a
                } else if parts.count == 1, let site = t.site, let a = try? DeviceAddress(site: site, device: parts[0]) {
                    address = a
                } else {
                    throw .badRequest("targets.devices: \"\(name)\" is not a device id (with targets.site) or a site/device address")
                }
                guard principal.canSee(site: address.site.rawValue) else { throw .forbidden("token '\(principal.name)' may not act on site \"\(address.site)\"") }
                guard fleet[address] != nil else { throw .notFound("device \(address) is not known to this console") }
                if let revoked = fleet[address]?.revokedAt {
                    throw .conflict("device \(address) was forgotten and is revoked since \(RFC3339.string(from: revoked)): it gets no commands until it connects again with new credentials")
                }
                chosen.append(address)
            }
        } else {
            guard let site = t.site else { throw .badRequest("targets: give a site, a list of devices, or both") }
            chosen = fleet.filter { $0.key.site.rawValue == site && $0.value.revokedAt == nil }.keys.sorted()
        }
        if t.idleOnly == true {
            chosen = chosen.filter { fleet[$0]?.state == .idle }
        }
        return chosen
    }

    func command(id: String, for principal: Principal) async throws(ConsoleError) -> CommandRecord {
        // In flight, then finished but not yet committed (the next batch), then
        // stored. A replica that does not coordinate knows only the stored one.
        var record = coordinator.isCoordinator ? inFlight.withLock { $0[id] } ?? state.pending.withLock { $0.commands[id] } : nil
        if record == nil { record = try? await store.command(id: id) }
        guard var record else { throw .notFound("command \"\(id)\" not found") }
        record.results = record.results.filter { principal.canSee(site: $0.site) }
        if record.results.isEmpty { throw .notFound("command \"\(id)\" not found") }
        return Self.redacted(record)
    }
}
