import FleetProtocol
import FleetSettings
import Foundation
import Logging
import Mosquitto
import Prometheus
import ServiceLifecycle
import Synchronization

/// The console: ingests everything under the topic root into the fleet
/// model and the store, evaluates health, dispatches commands, and answers
/// the API's questions. One `Service` (the HTTP server is another).
public final class ConsoleCore: Service, Sendable {
    public let configuration: ConsoleConfiguration
    let logger: Logger
    let store: any ConsoleStore
    let client: MQTTClient
    let model: Mutex<FleetModel>
    let pending = Mutex(IngestBatch())
    /// Commits and forgets, one at a time in order (see `SerialGate`).
    let commitGate = SerialGate()
    /// When device rows are next written (see `flushNow`).
    let deviceRowsDue = Mutex(ContinuousClock.now)
    let commands: Mutex<[String: CommandRecord]>
    let metrics: ConsoleMetrics
    /// Ingest and store progress, for /healthz and the systemd watchdog.
    let liveness = Liveness()
    /// What the console reads as now and how its loops wait (ConsoleClock.swift).
    let clock: any ConsoleClock
    /// What ingest applies messages by: fixed by the configuration, made
    /// once rather than for every message.
    let ingestRules: IngestRules
    let replyTopic: String
    /// Wakes the flusher when a batch grew large.
    let flushSignal: AsyncStream<Void>.Continuation
    let flushWakeups: AsyncStream<Void>
    /// Follow-up work ingest asks for (dispatching queued commands, resync),
    /// done by `workLoop` so ingest never waits on the network.
    let work: AsyncStream<ConsoleWork>.Continuation
    let workItems: AsyncStream<ConsoleWork>
    /// Whether this console does the once-only work (see ConsoleCore+Replica).
    let coordinating: Mutex<Coordination>
    /// This process's hold on the coordinator lease (replicas and PostgreSQL).
    let lease: CoordinatorLease
    /// Commands the coordinator has taken up (replicas: accepted by any replica).
    let adoptedCommands = Mutex<Set<String>>([])
    let rolloutSignal: AsyncStream<Void>.Continuation
    let rolloutWakeups: AsyncStream<Void>
    /// The API tokens in force: `configuration.tokens` until `replaceTokens`.
    let tokens: Mutex<[TokenEntry]>

    /// Opens (and migrates) the configured store and loads the fleet from it.
    public convenience init(configuration: ConsoleConfiguration, logger: Logger, eventLoopGroup: MQTTEventLoopGroup = .shared,
                            clock: any ConsoleClock = SystemConsoleClock()) async throws {
        let store = try await configuration.database.open(logger: logger)
        do {
            try await self.init(configuration: configuration, store: store, logger: logger, eventLoopGroup: eventLoopGroup, clock: clock)
        } catch {
            await store.close()
            throw error
        }
    }

    public init(configuration: ConsoleConfiguration, store: any ConsoleStore, logger: Logger, eventLoopGroup: MQTTEventLoopGroup = .shared,
                clock: any ConsoleClock = SystemConsoleClock()) async throws {
        self.configuration = configuration
        self.clock = clock
        ingestRules = IngestRules(resyncIntervalSeconds: configuration.health.resyncIntervalSeconds, quota: configuration.deviceQuota,
                                  isReplica: configuration.replica != nil, timeZone: configuration.timeZone(ofSite:))
        self.logger = logger
        self.store = store
        metrics = ConsoleMetrics()
        tokens = Mutex(configuration.tokens)
        replyTopic = configuration.topicRoot.consoleReplyTopic(instance: Identifier(rawValue: configuration.instance) ?? Identifier(rawValue: "console")!)

        // Start from what the database holds.
        var fleet = FleetModel()
        for r in try await store.loadDevices() {
            if let a = try? DeviceAddress(site: r.site, device: r.device) { fleet.devices[a] = r }
        }
        // Device rows are written behind the events (at most once a second);
        // where each device's events stand is what the event table says.
        for (a, last) in try await store.lastEventSequences() {
            var r = fleet.record(a)
            r.lastEventEpoch = last.epoch
            r.lastEventSeq = last.seq
            fleet.devices[a] = r
        }
        // Gaps seen before a restart are still gaps: the health loop asks
        // those devices for a resync again (sendOwedResyncs).
        for (a, missing) in try await store.missingEvents(within: 24 * 3600, limit: FleetModel.maxHolesPerDevice, now: clock.now()) {
            fleet.holes[a] = Set(missing)
        }
        for row in try await store.loadUsage() { fleet.usage[row.address] = (row.last, row.total) }
        for day in try await store.loadUsageDays() { fleet.usageDays["\(day.site)|\(day.day)"] = day }
        for alert in try await store.alerts(activeOnly: true, limit: 10_000) {
            fleet.activeAlerts[.init(site: alert.site, device: alert.device, type: alert.type)] =
                .init(id: alert.id, severity: alert.severity, message: alert.message, lastSeen: clock.now())
        }
        // Presence is re-learned from the retained status messages after connecting.
        model = Mutex(fleet)
        // A console on SQLite coordinates from the start; on PostgreSQL (a
        // replica or not) once it holds the lease (leaseLoop).
        let usesLease = Self.usesLease(configuration)
        lease = CoordinatorLease(store: store, instance: configuration.instance)
        coordinating = Mutex(usesLease ? Coordination() : Coordination(held: true, until: nil))
        metrics.coordinator.set(Double(usesLease ? 0 : 1))
        commands = Mutex(usesLease ? [:] : Dictionary(uniqueKeysWithValues: try await store.unfinishedCommands().map { ($0.id, $0) }))

        var mqtt = MQTTConfiguration(broker: configuration.broker, clientID: "console-\(configuration.instance)")
        // A single console keeps a persistent session: QoS 1 events and
        // command replies wait in the broker while it restarts. A replica
        // must not: the broker would go on handing a dead replica's session
        // its share of the shared subscription, and those events would wait
        // there instead of going to the replicas still running. Its session
        // ends with its connection; what it had not stored yet is found as a
        // gap in the event table and asked for again (scanForGaps).
        mqtt.cleanStart = configuration.replica != nil
        mqtt.sessionExpiry = configuration.replica != nil ? 0 : 24 * 3600
        mqtt.receiveMaximum = 1000
        mqtt.inboundBufferCapacity = 50_000
        mqtt.will = Will(topic: configuration.topicRoot.consoleStateTopic, payload: Array((try? FleetJSON.encode(ConsoleState(state: .offline, instance: configuration.instance))) ?? Data()),
                         qos: .atLeastOnce, retain: true)
        client = try MQTTClient(configuration: mqtt, eventLoopGroup: eventLoopGroup, logger: logger)
        (flushWakeups, flushSignal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        (workItems, work) = AsyncStream.makeStream(of: ConsoleWork.self, bufferingPolicy: .bufferingNewest(10_000))
        (rolloutWakeups, rolloutSignal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    public func run() async throws {
        logger.info("fleet-console starting", metadata: ["broker": "\(configuration.broker.host):\(configuration.broker.port)", "database": "\(configuration.database.description)", "replica": "\(configuration.replica ?? "-")"])
        client.start()
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.watchConnection() }
                group.addTask { await self.ingest() }
                group.addTask { await self.flushLoop() }
                group.addTask { await self.healthLoop() }
                group.addTask { await self.commandSweepLoop() }
                group.addTask { await self.workLoop() }
                group.addTask { await self.rolloutLoop() }
                group.addTask { await self.leaseLoop() }
                group.addTask { await self.deviceSyncLoop() }
                group.addTask { await self.systemdLoop() }
                group.addTask { await self.housekeepingLoop() }
                await (try? gracefulShutdown())
                SystemdNotifier()?.send("STOPPING=1")
                group.cancelAll()
            }
        } onGracefulShutdown: {}
        await flushNow(includingDevices: true)
        await releaseCoordination()
        if client.isConnected {
            _ = try? await client.publish(configuration.topicRoot.consoleStateTopic, payload: Array(try FleetJSON.encode(ConsoleState(state: .offline, ts: clock.now(), instance: configuration.instance))), qos: .atLeastOnce, retain: true)
        }
        await client.shutdown()
        await store.close()
        logger.info("fleet-console stopped")
    }

    private func watchConnection() async {
        var wasConnected = false
        for await change in client.connectionStates {
            defer { wasConnected = change.isConnected }
            if wasConnected && change.isConnected { continue } // the same connection, seen twice
            guard case .connected = change else { continue }
            logger.info("connected to the broker")
            do {
                try await client.subscribe(subscriptions)
                try await client.publish(configuration.topicRoot.consoleStateTopic,
                                         payload: Array(try FleetJSON.encode(ConsoleState(state: .online, ts: clock.now(), instance: configuration.instance))),
                                         qos: .atLeastOnce, retain: true)
            } catch {
                logger.warning("could not subscribe or announce; retried at the next connection", metadata: ["error": "\(error)"])
            }
            if isCoordinator { await dispatchQueuedCommands() }
        }
    }

    // MARK: Audit

    func audit(_ principal: Principal, _ action: String, targets: String, outcome: String, detail: String? = nil) async {
        do { try await store.audit(AuditDraft(actor: principal.name, action: action, targets: targets, outcome: outcome, detail: detail)) } catch {
            logger.error("could not write the audit log", metadata: ["error": "\(error)"])
        }
    }

    public func auditEntries(for principal: Principal, limit: Int) async throws(ConsoleError) -> [AuditEntry] {
        guard principal.role >= .admin else { throw .forbidden("the audit log needs the admin role; token '\(principal.name)' is \(principal.role.rawValue)") }
        // The log covers every site (sign-ins, rollouts, commands anywhere):
        // an admin limited to some sites may not read it (issue 20, item 7).
        if let sites = principal.sites {
            throw .forbidden("the audit log covers every site; token '\(principal.name)' is limited to \(sites.sorted().joined(separator: ", "))")
        }
        do { return try await store.auditEntries(limit: max(1, min(limit, 10_000))) } catch { throw .unavailable("the audit log cannot be read: \(error)") }
    }

    // MARK: Authentication

    /// The principal of a bearer token; constant-time comparison of SHA-256 digests.
    public func authenticate(authorization: String?) throws(ConsoleError) -> Principal {
        guard let authorization, authorization.lowercased().hasPrefix("bearer ") else { throw .unauthorized() }
        let token = String(authorization.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        guard !token.isEmpty else { throw .unauthorized() }
        guard let principal = principal(tokenDigest: TokenEntry.hash(token)) else { throw .unauthorized("the bearer token is not valid") }
        return principal
    }

    /// The principal of the token with this SHA-256 among the tokens in force
    /// now, or nil. The dashboard asks again on every page and live update,
    /// so a session ends with its token.
    func principal(tokenDigest digest: [UInt8]) -> Principal? {
        let entries = tokens.withLock { $0 }
        var match: TokenEntry?
        for entry in entries where constantTimeEqual(entry.sha256, digest) { match = entry }
        return match.map { Principal(name: $0.name, role: $0.role, sites: $0.sites) }
    }

    /// Puts `entries` in force instead of the current tokens (the seam for
    /// reloading the tokens file, issue 20 item 13). A removed token fails
    /// its next API call, and the dashboard sessions signed in with it end
    /// at their next page or live update (within a second for a stream).
    /// Returns the names of the tokens that ended (removed, or their entry
    /// changed) and of those added, for the log.
    @discardableResult
    public func replaceTokens(_ entries: [TokenEntry]) -> (ended: [String], added: [String]) {
        let old = tokens.withLock { all in
            defer { all = entries }
            return all
        }
        return (old.filter { !entries.contains($0) }.map(\.name), entries.filter { !old.contains($0) }.map(\.name))
    }

    public func require(_ role: Principal.Role, _ principal: Principal, for what: String) throws(ConsoleError) {
        guard principal.role >= role else {
            throw .forbidden("\(what) needs the \(role.rawValue) role; token '\(principal.name)' is \(principal.role.rawValue)")
        }
    }
}

func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for i in 0..<a.count { diff |= a[i] ^ b[i] }
    return diff == 0
}
