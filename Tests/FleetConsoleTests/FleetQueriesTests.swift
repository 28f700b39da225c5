@testable import FleetConsole
import FleetProtocol
import FleetTestSupport
import Foundation
import Logging
import Testing

/// The device list and the site counts, read from a model built by hand
/// (no broker), a real SQLite file and a manual clock (issue 23: at 10,000
/// devices a page summarises only its own devices, and the site counts are
/// one pass over the fleet).
@Suite("fleet queries")
struct FleetQueriesTests {
    static let now = Date(timeIntervalSince1970: 1_750_000_000)

    /// Two configured sites and a third only a device reports from; 3 devices
    /// each at north and south, 1 at east. north/n-2 has a critical alert,
    /// south/s-1 a warning; n-1 runs "calf-relief"; s-3 is offline; e-1 was
    /// never seen.
    static func queries() throws -> (FleetQueries, TemporaryDirectory) {
        var model = FleetModel()
        func add(_ site: String, _ device: String, online: Bool = true, seen: Double? = 0, program: String? = nil) throws {
            var r = DeviceRecord(site: site, device: device)
            r.online = online
            r.lastSeen = seen.map { now.addingTimeInterval($0) }
            if let program { r.session = SessionNow(sessionID: "s-\(device)", program: program, startedAt: now, state: "running") }
            model.devices[try DeviceAddress(site: site, device: device)] = r
        }
        try add("north", "n-1", seen: -5, program: "calf-relief")
        try add("north", "n-2", seen: -30)
        try add("north", "n-3", seen: -1)
        try add("south", "s-1", seen: -2)
        try add("south", "s-2", seen: -3)
        try add("south", "s-3", online: false, seen: -600)
        try add("east", "e-1", seen: nil)
        model.activeAlerts[.init(site: "north", device: "n-2", type: "stale")] = .init(id: 1, severity: .critical, message: "stale", lastSeen: now)
        model.activeAlerts[.init(site: "south", device: "s-1", type: "outbox_drops")] = .init(id: 2, severity: .warning, message: "drops", lastSeen: now)
        model.activeAlerts[.init(site: "south", device: nil, type: "site_down")] = .init(id: 3, severity: .warning, message: "site", lastSeen: now)

        var configuration = ConsoleConfiguration(databasePath: "unused")
        configuration.sites = [SiteConfiguration(id: "north", name: "North", timeZone: TimeZone(identifier: "UTC")!),
                               SiteConfiguration(id: "south", name: "South", timeZone: TimeZone(identifier: "UTC")!)]
        var logger = Logger(label: "test.queries")
        logger.logLevel = .critical
        let context = ConsoleContext(configuration: configuration, logger: logger, clock: ManualConsoleClock(now), metrics: ConsoleMetrics())
        let dir = try TemporaryDirectory(prefix: "fleet-queries")
        let store = try SQLiteStore(path: dir.url.appendingPathComponent("console.sqlite").path)
        return (FleetQueries(context: context, state: FleetState(model: model), store: store), dir)
    }

    static let admin = Principal(name: "admin", role: .admin)

    @Test("a page of the list: filtered by site, state and health before it is cut, sorted by the typed column, only its devices summarised with their alerts")
    func deviceListPages() throws {
        let (queries, _) = try Self.queries()
        let all = try queries.deviceList(for: Self.admin, query: DeviceListQuery(site: nil))
        #expect(all.total == 7)
        #expect(all.devices.map(\.device) == ["e-1", "n-1", "n-2", "n-3", "s-1", "s-2", "s-3"], "by site, then device")

        let bySeen = try queries.deviceList(for: Self.admin, query: DeviceListQuery { ["sort": "-last_seen", "limit": "3"][$0] })
        #expect(bySeen.devices.map(\.device) == ["n-3", "s-1", "s-2"], "newest first")
        #expect(bySeen.total == 7 && bySeen.nextOffset == 3)
        let oldest = try queries.deviceList(for: Self.admin, query: DeviceListQuery { ["sort": "last_seen", "limit": "2"][$0] })
        #expect(oldest.devices.map(\.device) == ["e-1", "s-3"], "never seen first, then the oldest")

        let critical = try queries.deviceList(for: Self.admin, query: DeviceListQuery(health: .critical))
        #expect(critical.devices.map(\.device) == ["n-2"])
        #expect(critical.devices.first?.alerts == ["stale"] && critical.devices.first?.health == .critical)
        let byHealth = try queries.deviceList(for: Self.admin, query: DeviceListQuery { ["sort": "health", "site": "south"][$0] })
        #expect(byHealth.devices.map { "\($0.device):\($0.health.rawValue)" } == ["s-2:ok", "s-3:ok", "s-1:warning"], "by health, ties by device")

        let offline = try queries.deviceList(for: Self.admin, query: DeviceListQuery(state: .offline))
        #expect(offline.devices.map(\.device) == ["s-3"])
        let running = try queries.deviceList(for: Self.admin, query: DeviceListQuery { ["q": "CALF"][$0] })
        #expect(running.devices.map(\.device) == ["n-1"], "q matches the running program")
        #expect(running.devices.first?.session?.program == "calf-relief")
    }

    @Test("a token limited to sites sees only their devices and is refused another site by name")
    func deviceListScope() throws {
        let (queries, _) = try Self.queries()
        let north = Principal(name: "north-viewer", role: .viewer, sites: ["north"])
        #expect(try queries.deviceList(for: north, query: DeviceListQuery(site: nil)).devices.map(\.device) == ["n-1", "n-2", "n-3"])
        #expect(throws: ConsoleError.self) { try queries.deviceList(for: north, query: DeviceListQuery(site: "south")) }
        #expect(queries.siteIDs(for: north) == ["north"])
        #expect(queries.siteIDs(for: Self.admin) == ["east", "north", "south"], "configured sites and the one a device reports from")
    }

    @Test("site counts: every configured site and every site a device reports from, each counted once per device, alerts by site including the site's own")
    func siteCounts() async throws {
        let (queries, _) = try Self.queries()
        let sites = await queries.sites(for: Self.admin)
        #expect(sites.map(\.site) == ["east", "north", "south"])
        let north = try #require(sites.first { $0.site == "north" })
        #expect(north.devices == 3 && north.online == 3 && north.inSession == 1 && north.idle == 2 && north.offline == 0)
        #expect(north.activeAlerts == 1 && north.name == "North")
        #expect(abs(north.utilisation - 1.0 / 3.0) < 1e-9)
        let south = try #require(sites.first { $0.site == "south" })
        #expect(south.devices == 3 && south.online == 2 && south.offline == 1 && south.idle == 2)
        #expect(south.activeAlerts == 2, "the device's alert and the site's own")
        let east = try #require(sites.first { $0.site == "east" })
        #expect(east.devices == 1 && east.name == "east", "a site no one configured is named by its id")
        let limited = await queries.sites(for: Principal(name: "south-viewer", role: .viewer, sites: ["south"]))
        #expect(limited.map(\.site) == ["south"])
    }
}
