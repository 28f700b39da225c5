import FleetProtocol
import FleetTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

@testable import FleetConsole

// Issue 20, item 6: rollouts and the overview seen through a site-limited token.
extension ConsoleReplyAndScopeTests {
    static let north2 = try! DeviceAddress(site: "clinic-north", device: "massager-02")
    static let south2 = try! DeviceAddress(site: "spa-south", device: "massager-02")

    static func rolloutDocument(name: String, targets: RolloutDocument.Targets) -> RolloutDocument {
        RolloutDocument(name: name, config: DeviceConfig(telemetryIntervalSeconds: 2), targets: targets,
                        waves: .init(canary: 1, percentages: [50, 100], factor: nil),
                        errorThreshold: .init(percent: 50, minExecuted: 1, action: "pause"))
    }

    /// Signs in through the dashboard; returns the cookie header to send.
    static func dashboardCookie(_ client: some TestClientProtocol, token: String) async throws -> String {
        let response = try await client.execute(uri: "/login", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                                                body: ByteBuffer(string: "token=\(token)"))
        let setCookie = try #require(response.headers[.setCookie], "sign-in with \(token): \(response.status)")
        return String(try #require(setCookie.split(separator: ";").first))
    }

    @Test("a site-limited token sees of a fleet-wide rollout only its sites' devices, counts, waves, targets and errors; one wholly elsewhere is 404; it cannot pause, resume or abort one that spans other sites")
    func rolloutsAreScopedToTheCallersSites() async throws {
        let viewerToken = "north-viewer-token", operatorToken = "north-operator-token", adminToken = "head-office-token"
        let tokens = [
            TokenEntry(name: "north-screen", sha256: TokenEntry.hash(viewerToken), role: .viewer, sites: ["clinic-north"]),
            TokenEntry(name: "north-desk", sha256: TokenEntry.hash(operatorToken), role: .operator, sites: ["clinic-north"]),
            TokenEntry(name: "head-office", sha256: TokenEntry.hash(adminToken), role: .admin),
        ]
        try await Self.withCore(tokens: tokens) { core in
            for a in [Self.north, Self.north2] { Self.announce(a, programs: ["calf-release"], to: core) }
            for a in [Self.south, Self.south2] { Self.announce(a, programs: ["sole-vitality"], to: core) }
            let headOffice = Principal(name: "head-office", role: .admin)
            let viewer = Principal(name: "north-screen", role: .viewer, sites: ["clinic-north"])
            let northAdmin = Principal(name: "north-admin", role: .admin, sites: ["clinic-north"])

            // One rollout wholly at spa-south (aborted before it wrote anything), then a fleet-wide one.
            let southOnly = try await core.rollouts.create(Self.rolloutDocument(name: "south only", targets: .init(sites: ["spa-south"])), by: headOffice)
            _ = try await core.rollouts.control(id: southOnly.id, action: "abort", by: headOffice)
            let fleetWide = try await core.rollouts.create(Self.rolloutDocument(name: "fleet wide", targets: .init(all: true)), by: headOffice)
            #expect(fleetWide.devices.count == 4 && !fleetWide.partial)
            // One device failed at each site; the error threshold paused it, counting both.
            let threshold = try #require(fleetWide.document.errorThreshold)
            let fullReason = RolloutRunner.thresholdReason(failures: 2, executed: 2, threshold: threshold)
            try await core.store.updateRollouts { all in
                let i = try #require(all.firstIndex { $0.id == fleetWide.id })
                for (j, d) in all[i].devices.enumerated() where d.device == "massager-01" {
                    all[i].devices[j].state = .failed
                    all[i].devices[j].error = "rejected: \(d.site) refused max_session_minutes"
                }
                all[i].state = .paused
                all[i].reason = fullReason
            }

            // In the core: the list, one rollout, the rollout wholly elsewhere.
            let list = try await core.rollouts.list(for: viewer)
            #expect(list.map(\.id) == [fleetWide.id], "the south-only rollout is not listed: \(list.map(\.id))")
            let view = try await core.rollouts.rollout(id: fleetWide.id, for: viewer)
            #expect(view.partial)
            #expect(Set(view.devices.map(\.site)) == ["clinic-north"], "\(view.devices)")
            #expect(view.counts == ["failed": 1, "pending": 1], "counts over clinic-north's devices only: \(view.counts)")
            #expect(view.waves.map(\.size).reduce(0, +) == 2, "wave sizes over clinic-north's devices: \(view.waves)")
            #expect(view.reason?.contains("2 of 2") == false && view.reason?.contains("error threshold") == true, "\(view.reason ?? "nil")")
            let missing = await #expect(throws: ConsoleError.self) { try await core.rollouts.rollout(id: southOnly.id, for: viewer) }
            #expect(missing?.status == 404, "\(String(describing: missing))")
            // Someone of every site sees it all.
            let whole = try await core.rollouts.rollout(id: fleetWide.id, for: headOffice)
            #expect(!whole.partial && whole.devices.count == 4 && whole.reason == fullReason)

            // A site-limited admin acts only on rollouts wholly at its sites, and targets nothing it may not see.
            for action in ["pause", "resume", "abort"] {
                let refused = await #expect(throws: ConsoleError.self) { try await core.rollouts.control(id: fleetWide.id, action: action, by: northAdmin) }
                #expect(refused?.status == 403, "\(action): \(String(describing: refused))")
            }
            #expect(try await core.rollouts.rollout(id: fleetWide.id, for: headOffice).state == .paused, "nothing changed")
            let all = await #expect(throws: ConsoleError.self) {
                try await core.rollouts.create(Self.rolloutDocument(name: "everything", targets: .init(all: true)), by: northAdmin)
            }
            #expect(all?.status == 403 && all?.message.contains("spa-south") == false, "\(String(describing: all))")
            let unknownElsewhere = await #expect(throws: ConsoleError.self) {
                try await core.rollouts.create(Self.rolloutDocument(name: "probe", targets: .init(devices: ["spa-south/no-such-device"])), by: northAdmin)
            }
            #expect(unknownElsewhere?.status == 403, "403, not 404: another site's devices neither exist nor not: \(String(describing: unknownElsewhere))")

            // Through HTTP: the API (the CLI reads it), the dashboard's pages.
            let app = try HTTPAPI.makeApplication(core: core, logger: Logger(label: "test.http"))
            try await app.test(.router) { client in
                let bearer: HTTPFields = [.authorization: "Bearer \(viewerToken)"]
                for path in ["/api/v1/rollouts", "/api/v1/rollouts/\(fleetWide.id)"] {
                    let response = try await client.execute(uri: path, method: .get, headers: bearer)
                    let body = String(buffer: response.body)
                    #expect(response.status == .ok, "\(path): \(body)")
                    #expect(!body.contains("spa-south") && !body.contains("south only"), "\(path) shows another site: \(body)")
                    #expect(body.contains("clinic-north") && body.contains(#""partial":true"#), "\(path): \(body)")
                }
                let elsewhere = try await client.execute(uri: "/api/v1/rollouts/\(southOnly.id)", method: .get, headers: bearer)
                #expect(elsewhere.status == .notFound, "\(String(buffer: elsewhere.body))")
                let asAdmin = try await client.execute(uri: "/api/v1/rollouts/\(fleetWide.id)", method: .get, headers: [.authorization: "Bearer \(adminToken)"])
                #expect(String(buffer: asAdmin.body).contains("spa-south"), "an admin of every site sees every device")

                let viewerCookie = try await Self.dashboardCookie(client, token: viewerToken)
                let page = try await client.execute(uri: "/rollouts", method: .get, headers: [.cookie: viewerCookie])
                let html = String(buffer: page.body)
                #expect(page.status == .ok && html.contains("clinic-north/massager-01"), "\(html)")
                #expect(!html.contains("spa-south") && !html.contains("south only"), "the rollouts page shows another site: \(html)")

                // The overview's start forms offer each site's own programs, never another site's.
                let operatorCookie = try await Self.dashboardCookie(client, token: operatorToken)
                let overview = String(buffer: try await client.execute(uri: "/", method: .get, headers: [.cookie: operatorCookie]).body)
                #expect(overview.contains(#"<option value="calf-release">"#), "\(overview)")
                #expect(!overview.contains("sole-vitality") && !overview.contains("spa-south"), "the overview shows another site's programs: \(overview)")
            }
        }
    }
}
