@testable import FleetConsole
import FleetProtocol
import FleetTestSupport
import Foundation
import Logging
import ServiceLifecycle
import Testing

/// The console as a group of services: it starts them, and a graceful
/// shutdown stops them and then commits what ingest had gathered before the
/// store is closed. No broker: the client tries a closed port and never
/// connects, which changes nothing here.
@Suite("Console services: composed in a ServiceGroup, stopped in order")
struct ConsoleServicesTests {
    static let address = try! DeviceAddress(site: "clinic-north", device: "massager-01")

    static func status(version: String, seq: UInt64) -> AgentPayload {
        .status(Stamped(Status(state: .online, agentVersion: version, programs: ["calf_relief"], configVersion: 0, capabilities: []),
                        envelope: Envelope(ts: Date(), epoch: 1, seq: seq)))
    }

    @Test("one service per job, the lease's only on a store that shares it, and a graceful shutdown commits the device rows ingest changed last")
    func gracefulShutdownCommitsWhatIngestGathered() async throws {
        let directory = try TemporaryDirectory(prefix: "console-services")
        defer { directory.remove() }
        var configuration = ConsoleConfiguration(databasePath: directory.file("console.sqlite").path)
        configuration.broker.port = 1 // nothing listens there
        var logger = Logger(label: "test.console")
        logger.logLevel = .critical
        let core = try await ConsoleCore(configuration: configuration, logger: logger)
        let names = core.services.map { String(describing: type(of: $0)) }
        #expect(names == ["BrokerLink", "BatchWriter", "Coordinator", "IngestService", "CommandService", "HealthMonitor", "RolloutService", "Housekeeping"],
                "SQLite, not a replica, not under systemd: \(names)")

        let group = ServiceGroup(services: [core], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            core.ingest.apply(Self.status(version: "1.0", seq: 1), from: Self.address, raw: [])
            // The first commit writes the device rows; later ones only every 5 s.
            try await waitUntil(timeout: .seconds(20), "the first commit wrote the device's row") {
                (try? await core.store.loadDevices().first?.agentVersion) == "1.0"
            }
            core.ingest.apply(Self.status(version: "2.0", seq: 2), from: Self.address, raw: [])
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        // The console closed its store: open the file again and read what it left.
        let reopened = try await configuration.database.open(logger: logger)
        let rows = try await reopened.loadDevices()
        await reopened.close()
        #expect(rows.map(\.agentVersion) == ["2.0"], "the shutdown's last commit wrote the row ingest changed just before")
    }
}
