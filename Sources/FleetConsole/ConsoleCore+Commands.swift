import FleetProtocol
import Foundation
import Mosquitto

enum ConsoleWork: Sendable {
    case dispatch(DeviceAddress)
    /// Everything queued (a new coordinator's first round).
    case dispatchAll
    case resync(DeviceAddress)
}

extension ConsoleCore {
    func workLoop() async {
        for await item in workItems {
            switch item {
            case .dispatch(let address): if isCoordinator { await dispatchQueuedCommands(for: address) }
            case .dispatchAll: if isCoordinator { await dispatchQueuedCommands() }
            case .resync(let address): if isCoordinator { await sendResync(to: address) }
            }
        }
    }

    /// `POST /api/v1/commands`: validates, resolves targets within the
    /// caller's sites, records a result per device (persisted), and sends to
    /// the devices that are online; the others stay queued until they return
    /// or the command expires.
    public func submit(_ submission: CommandSubmission, by principal: Principal) async throws(ConsoleError) -> CommandRecord {
        try require(.operator, principal, for: "sending commands")
        let action = Action(rawValue: submission.action)
        let request: CommandRequest
        do { request = try CommandRequest(action: action, params: submission.params ?? .object([:])) } catch {
            await audit(principal, "command.\(submission.action)", targets: describe(submission.targets), outcome: "refused", detail: error.message)
            throw .badRequest(error.message)
        }
        let ttl = submission.ttlSeconds ?? 60
        guard ttl >= 1, ttl <= 7 * 86_400 else { throw .badRequest("ttl_s: expected seconds from 1 to 604800, got \(ttl)") }
        if Command.startingActions.contains(action), ttl > configuration.health.maxStartTTLSeconds {
            throw .badRequest("ttl_s: \(action) may wait at most \(Int(configuration.health.maxStartTTLSeconds)) s for a device (health.max_start_ttl_s), got \(ttl): a massager that returns later may have someone else seated")
        }
        let targets = try resolveTargets(submission.targets, for: principal)
        guard !targets.isEmpty else {
            throw .badRequest("targets: no device matches (site \(submission.targets.site ?? "any"), devices \(submission.targets.devices?.joined(separator: ",") ?? "all")\(submission.targets.idleOnly == true ? ", idle and online only" : ""))")
        }
        let now = clock.now()
        var record = CommandRecord(id: "cmd-\(UUID().uuidString.lowercased())", action: action.rawValue, params: request.params,
                                   createdBy: principal.name, createdAt: now, expiresAt: now.addingTimeInterval(ttl),
                                   results: targets.map { CommandTargetResult(site: $0.site.rawValue, device: $0.device.rawValue, state: .queued, updatedAt: now,
                                                                              nonce: UUID().uuidString.lowercased()) })
        do { try await store.saveCommand(record) } catch {
            throw .unavailable("the command could not be recorded: \(error)")
        }
        await audit(principal, "command.\(action.rawValue)", targets: targets.map(\.description).joined(separator: ","), outcome: "accepted", detail: record.id)
        // The coordinator sends it now; another replica leaves it queued in the
        // database, where the coordinator takes it up within a second.
        guard isCoordinator else { return Self.redacted(record) }
        adoptedCommands.withLock { _ = $0.insert(record.id) }
        commands.withLock { $0[record.id] = record }
        for address in targets { await send(commandID: record.id, to: address) }
        record = commands.withLock { $0[record.id] } ?? record
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
        let fleet = model.withLock { $0.devices }
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

    public func command(id: String, for principal: Principal) async throws(ConsoleError) -> CommandRecord {
        // In flight, then finished but not yet committed (the next batch), then
        // stored. A replica that does not coordinate knows only the stored one.
        var record = isCoordinator ? commands.withLock { $0[id] } ?? pending.withLock { $0.commands[id] } : nil
        if record == nil { record = try? await store.command(id: id) }
        guard var record else { throw .notFound("command \"\(id)\" not found") }
        record.results = record.results.filter { principal.canSee(site: $0.site) }
        if record.results.isEmpty { throw .notFound("command \"\(id)\" not found") }
        return Self.redacted(record)
    }

    /// Sends one device's copy of a command if the device is online.
    func send(commandID: String, to address: DeviceAddress) async {
        guard let record = commands.withLock({ $0[commandID] }),
              let result = record.results.first(where: { $0.site == address.site.rawValue && $0.device == address.device.rawValue }),
              result.state == .queued else { return }
        let now = clock.now()
        if now >= record.expiresAt {
            update(commandID, address, .expire, at: now)
            return
        }
        let online = model.withLock { $0.devices[address]?.online ?? false }
        guard online, client.isConnected else { return }
        guard let request = try? CommandRequest(action: Action(rawValue: record.action), params: record.params) else {
            update(commandID, address, .undecodable, at: now)
            return
        }
        let command = Command(id: "\(record.id)/\(address.site)/\(address.device)", request: request, expiresAt: record.expiresAt)
        // Claim the copy, queued → sent in one step: of the paths that dispatch
        // (submit, a device back online, a new coordinator), one sends it.
        guard update(commandID, address, .claim, at: now) else { return }
        do {
            let payload = Array(try FleetJSON.encode(command))
            try await client.publish(configuration.topicRoot.topic(.cmd, for: address), payload: payload, qos: .atLeastOnce,
                                     properties: MQTTProperties(responseTopic: replyTopic(for: address),
                                                                correlationData: ReplyCorrelation(commandID: record.id, address: address, nonce: result.nonce ?? "").bytes,
                                                                messageExpiryInterval: UInt32(max(1, record.expiresAt.timeIntervalSince(now).rounded(.up))),
                                                                contentType: "application/json"))
        } catch {
            logger.warning("could not send a command; it stays queued", metadata: ["command.id": "\(commandID)", "device": "\(address)", "error": "\(error)"])
            update(commandID, address, .sendFailed, at: clock.now())
        }
    }

    /// Sends what waits for `address` (it came back online), or for everyone after a reconnect.
    func dispatchQueuedCommands(for address: DeviceAddress? = nil) async {
        let waiting = commands.withLock { all in
            all.values.flatMap { record in
                record.results.filter { $0.state == .queued && (address == nil || ($0.site == address!.site.rawValue && $0.device == address!.device.rawValue)) }
                    .compactMap { r in (try? DeviceAddress(site: r.site, device: r.device)).map { (record.id, $0) } }
            }
        }
        for (id, target) in waiting { await send(commandID: id, to: target) }
    }

    func handleReply(_ message: MQTTMessage) {
        // Retained, or not on a device's own reply topic: dropped (ConsoleCore+Replies).
        guard let sender = replyingDevice(message) else { return }
        guard let correlation = message.properties.correlationData.flatMap(ReplyCorrelation.init) else {
            metrics.malformed.increment()
            return
        }
        let (id, address) = (correlation.commandID, correlation.address)
        // The broker let only `sender` write this topic: it answers for itself only.
        guard address == sender else {
            metrics.malformed.increment()
            logger.warning("ignored a command reply for another device", metadata: ["command.id": "\(id)", "device": "\(address)", "sender": "\(sender)"])
            return
        }
        // Only the device the copy was sent to knows its nonce (resync requests carry none).
        let expected = commands.withLock { $0[id]?.results.first { $0.site == address.site.rawValue && $0.device == address.device.rawValue }?.nonce }
        if let expected, expected != correlation.nonce {
            metrics.malformed.increment()
            logger.warning("ignored a command reply with the wrong correlation for its device", metadata: ["command.id": "\(id)", "device": "\(address)"])
            return
        }
        guard case .success(let reply) = FleetJSON.decode(CommandReply.self, from: message.payload) else {
            metrics.malformed.increment()
            return
        }
        update(id, address, .reply(reply.outcome), at: clock.now())
    }

    /// Applies `transition` to one device's copy (`CommandTargetResult.apply`,
    /// the pure state machine) and returns whether its state allowed it. A
    /// changed record is persisted with the next ingest batch (≤ 100 ms), so
    /// a reply never waits on the database.
    @discardableResult
    func update(_ commandID: String, _ address: DeviceAddress, _ transition: CommandTransition, at now: Date) -> Bool {
        let record = commands.withLock { all -> CommandRecord? in
            guard var record = all[commandID],
                  let i = record.results.firstIndex(where: { $0.site == address.site.rawValue && $0.device == address.device.rawValue }),
                  record.results[i].apply(transition, at: now) else { return nil }
            if record.isFinished { all[commandID] = nil } else { all[commandID] = record }
            return record
        }
        guard let record else { return false }
        var finished: AuditDraft?
        if record.isFinished {
            let counts = Dictionary(grouping: record.results, by: \.state).map { "\($0.value.count) \($0.key.rawValue)" }.sorted().joined(separator: ", ")
            finished = AuditDraft(actor: record.createdBy, action: "command.\(record.action).finished",
                                  targets: record.results.map { "\($0.site)/\($0.device)" }.joined(separator: ","), outcome: counts, detail: record.id)
        }
        pending.withLock { b in
            b.commands[record.id] = record
            if let finished { b.audits.append(finished) }
        }
        flushSignal.yield()
        return true
    }

    /// Every second: sent without a reply past the timeout → timed_out;
    /// queued past expires_at → expired.
    func commandSweepLoop() async {
        while !Task.isCancelled {
            try? await clock.sleep(for: .seconds(1))
            guard isCoordinator else { continue }
            await adoptSubmittedCommands()
            let now = clock.now()
            let timeout = configuration.health.commandTimeoutSeconds
            let due = commands.withLock { all in all.values.flatMap { record in record.sweep(now: now, timeout: timeout).map { (record.id, $0.0, $0.1) } } }
            for (id, address, transition) in due { update(id, address, transition, at: now) }
        }
    }

    func sendResync(to address: DeviceAddress) async {
        guard client.isConnected else { return }
        let command = Command(id: "resync-\(UUID().uuidString.lowercased())", request: .resync, expiresAt: clock.now().addingTimeInterval(60))
        do {
            try await client.publish(configuration.topicRoot.topic(.cmd, for: address), payload: Array(try FleetJSON.encode(command)), qos: .atLeastOnce,
                                     properties: MQTTProperties(responseTopic: replyTopic(for: address), correlationData: ReplyCorrelation(commandID: command.id, address: address, nonce: "").bytes))
            metrics.resyncs.increment()
        } catch {
            logger.warning("could not send resync", metadata: ["device": "\(address)", "error": "\(error)"])
        }
    }
}
