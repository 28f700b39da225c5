import FleetProtocol
import FleetSettings
import Foundation
import Logging
import Mosquitto
import ServiceLifecycle

/// The console, put together: it opens what the services share (the store,
/// the MQTT client, the fleet as the database left it), builds one service
/// per job, and runs them in a `ServiceGroup`. It owns none of their work.
///
/// | job | service |
/// | --- | --- |
/// | the broker connection | `BrokerLink` |
/// | ingest | `IngestService` |
/// | persistence | `BatchWriter` (and `forget`), `Housekeeping` |
/// | health | `HealthMonitor` (`healthMonitor`) |
/// | commands | `CommandService` |
/// | rollouts | `RolloutService` |
/// | coordination | `Coordinator`, `DeviceRowSync` (replicas) |
/// | HTTP | `HTTPAPI.makeApplication` over `queries`, `access` and the services above |
///
/// They share `FleetState` (the model and the pending batch) and nothing
/// else; docs/architecture.md draws the whole picture.
public final class ConsoleCore: Service, Sendable {
    public let configuration: ConsoleConfiguration
    let context: ConsoleContext
    let store: any ConsoleStore
    let client: MQTTClient
    let state: FleetState
    /// Ingest and store progress, for /healthz and the systemd watchdog.
    let liveness = Liveness()

    let coordinator: Coordinator
    let link: BrokerLink
    public let ingest: IngestService
    let persistence: BatchWriter
    let housekeeping: Housekeeping
    let healthMonitor: HealthMonitor
    let commands: CommandService
    let rollouts: RolloutService
    let rowSync: DeviceRowSync
    let queries: FleetQueries
    public let access: AccessControl
    let audit: AuditTrail

    var logger: Logger { context.logger }
    var metrics: ConsoleMetrics { context.metrics }
    var clock: any ConsoleClock { context.clock }
    /// `GET /metrics`.
    public var metricsText: String { metrics.text() }

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
        let context = ConsoleContext(configuration: configuration, logger: logger, clock: clock, metrics: ConsoleMetrics())
        self.configuration = configuration
        self.context = context
        self.store = store
        state = FleetState(model: try await Self.loadFleet(from: store, now: clock.now()))
        client = try MQTTClient(configuration: Self.mqttConfiguration(configuration), eventLoopGroup: eventLoopGroup, logger: logger)

        let topics = ConsoleTopics(context)
        audit = AuditTrail(store: store, logger: logger)
        access = AccessControl(tokens: configuration.tokens)
        coordinator = Coordinator(context: context, lease: CoordinatorLease(store: store, instance: configuration.instance))
        // On SQLite the console coordinates from the start, with the commands
        // it left unfinished; on PostgreSQL the lease's holder loads them (`takeOver`).
        let unfinished = coordinator.usesLease ? [] : try await store.unfinishedCommands()
        commands = CommandService(context: context, state: state, store: store, client: client, topics: topics, coordinator: coordinator,
                                  audit: audit, unfinished: unfinished)
        rollouts = RolloutService(context: context, state: state, store: store, client: client, coordinator: coordinator, audit: audit)
        ingest = IngestService(context: context, state: state, client: client, topics: topics, commands: commands, rollouts: rollouts, liveness: liveness)
        persistence = BatchWriter(context: context, state: state, store: store, liveness: liveness, audit: audit)
        housekeeping = Housekeeping(context: context, state: state, store: store, coordinator: coordinator)
        healthMonitor = HealthMonitor(context: context, state: state, store: store, coordinator: coordinator, commands: commands, audit: audit)
        rowSync = DeviceRowSync(context: context, state: state, store: store)
        queries = FleetQueries(context: context, state: state, store: store)
        let commands = self.commands
        link = BrokerLink(context: context, client: client, topics: topics) { await commands.connected() }
        // Loaded in this order when the lease is taken: commands, then alerts.
        coordinator.register(commands)
        coordinator.register(healthMonitor)
        coordinator.register(rollouts)
    }

    /// The fleet as the database left it.
    static func loadFleet(from store: any ConsoleStore, now: Date) async throws -> FleetModel {
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
        // Gaps seen before a restart are still gaps: the health monitor asks
        // those devices for a resync again (sendOwedResyncs).
        for (a, missing) in try await store.missingEvents(within: 24 * 3600, limit: FleetModel.maxHolesPerDevice, now: now) {
            fleet.holes[a] = Set(missing)
        }
        for row in try await store.loadUsage() { fleet.usage[row.address] = (row.last, row.total) }
        for day in try await store.loadUsageDays() { fleet.usageDays["\(day.site)|\(day.day)"] = day }
        for alert in try await store.alerts(activeOnly: true, limit: 10_000) {
            fleet.activeAlerts[.init(site: alert.site, device: alert.device, type: alert.type)] =
                .init(id: alert.id, severity: alert.severity, message: alert.message, lastSeen: now)
        }
        // Presence is re-learned from the retained status messages after connecting.
        return fleet
    }

    static func mqttConfiguration(_ configuration: ConsoleConfiguration) -> MQTTConfiguration {
        var mqtt = MQTTConfiguration(broker: configuration.broker, clientID: "console-\(configuration.instance)")
        // A single console keeps a persistent session: QoS 1 events and
        // command replies wait in the broker while it restarts. A replica
        // must not: the broker would go on handing a dead replica's session
        // its share of the shared subscription, and those events would wait
        // there instead of going to the replicas still running. Its session
        // ends with its connection; what it had not stored yet is found as a
        // gap in the event table and asked for again (HealthMonitor.scanForGaps).
        mqtt.cleanStart = configuration.replica != nil
        mqtt.sessionExpiry = configuration.replica != nil ? 0 : 24 * 3600
        mqtt.receiveMaximum = 1000
        mqtt.inboundBufferCapacity = 50_000
        mqtt.will = BrokerLink.will(configuration)
        return mqtt
    }

    /// The services, in the order they start; a graceful shutdown stops them
    /// in reverse: the watchdog says STOPPING, rollouts, health and commands
    /// stop acting, ingest stops taking messages, and the batch writer last.
    var services: [any Service] {
        var all: [any Service] = [link, persistence, coordinator]
        if context.isReplica { all.append(rowSync) }
        all += [ingest, commands, healthMonitor, rollouts, housekeeping] as [any Service]
        if let watchdog = SystemdWatchdog(liveness: liveness, logger: logger) { all.append(watchdog) }
        return all
    }

    /// Runs the services until a graceful shutdown or cancellation, then
    /// commits what is left (device rows too), gives the lease up, says
    /// `offline` and closes the connection and the store, in that order.
    public func run() async throws {
        logger.info("fleet-console starting", metadata: ["broker": "\(configuration.broker.host):\(configuration.broker.port)", "database": "\(configuration.database.description)", "replica": "\(configuration.replica ?? "-")"])
        let group = ServiceGroup(configuration: .init(
            services: services.map { service in
                // The lease service returns at once on SQLite: that is no reason to stop.
                .init(service: service, successTerminationBehavior: service is Coordinator ? .ignore : .gracefullyShutdownGroup)
            },
            logger: logger))
        do { try await group.run() } catch {
            logger.error("a console service failed; stopping", metadata: ["error": "\(error)"])
        }
        await persistence.flushNow(includingDevices: true)
        await coordinator.release()
        await link.close()
        await store.close()
        logger.info("fleet-console stopped")
    }
}
