import FleetTestSupport
import Foundation
import Testing

// Who may do what: tokens, roles, sites; bad requests; bad configs.
extension ConsoleEndToEndTests {
    /// One endpoint of a group, with the least role that may use it.
    struct Endpoint: CustomStringConvertible {
        var group: String
        var method: String
        var path: String
        var body: WireJSON?
        var role: String

        var description: String { "\(method) \(path)" }
    }

    static let roleRank = ["viewer": 0, "operator": 1, "admin": 2]

    @Test("every endpoint group answers 401 without a valid token and 403 below its role; /metrics and /healthz need no token; FLEET_CONSOLE_ADMIN_TOKEN is an admin")
    func tokensAndRoles() async throws {
        let n1 = Fleet.device(Fleet.north, "north-01")
        let s1 = Fleet.device(Fleet.south, "south-01")
        let s2 = Fleet.device(Fleet.south, "south-02")
        let environmentAdmin = "env-admin-\(UUID().uuidString.lowercased())"
        try await ConsoleRig.run(
            console: {
                $0.environmentAdminToken = environmentAdmin
                $0.addressesAsFlags = true  // --broker, --http and --db instead of config keys
            },
            agents: [n1, s1, s2]
        ) { rig in
            // Two alerts to acknowledge (one per role that may), and a command to read.
            for device in [s1, s2] {
                try rig.agent(device).kill()
            }
            let alerts = try await rig.waitFor("/api/v1/alerts?active=true", "offline alerts for south-01 and south-02") {
                let list = $0.json?["alerts"]?.array ?? []
                return [s1, s2].allSatisfy { !list.about($0).isEmpty }
            }
            let list = try #require(alerts.json?["alerts"]?.array)
            let alertIDs = try [s1, s2].map { try #require(list.about($0).first?["id"]?.int) }
            let ping: WireJSON = ["action": "ping", "targets": ["devices": ["clinic-north/north-01"]], "ttl_s": 30]
            let command = try await rig.submit(ping, token: rig.tokens.admin)
            let commandID = try #require(command["id"]?.string)
            let day = Day.string()

            let endpoints: [Endpoint] = [
                Endpoint(group: "sites", method: "GET", path: "/api/v1/sites", role: "viewer"),
                Endpoint(group: "devices", method: "GET", path: "/api/v1/devices", role: "viewer"),
                Endpoint(group: "devices", method: "GET", path: "/api/v1/devices?site=\(Fleet.north)&state=idle", role: "viewer"),
                Endpoint(group: "devices", method: "GET", path: "/api/v1/devices/\(Fleet.north)/north-01", role: "viewer"),
                Endpoint(group: "commands", method: "POST", path: "/api/v1/commands", body: ping, role: "operator"),
                Endpoint(group: "commands", method: "GET", path: "/api/v1/commands/\(commandID)", role: "viewer"),
                Endpoint(group: "alerts", method: "GET", path: "/api/v1/alerts?active=true", role: "viewer"),
                Endpoint(group: "alerts", method: "GET", path: "/api/v1/alerts?active=false", role: "viewer"),
                Endpoint(group: "alerts", method: "POST", path: "/api/v1/alerts/{alert}/ack", role: "operator"),
                Endpoint(group: "usage", method: "GET", path: "/api/v1/usage?from=\(day)&to=\(day)", role: "viewer"),
                Endpoint(group: "audit", method: "GET", path: "/api/v1/audit?limit=10", role: "admin"),
            ]
            let sha = ConsoleProcess.sha256Hex(rig.tokens.viewer)
            let invalid: [(String, [String: String])] = [
                ("no Authorization", [:]),
                ("an unknown bearer token", ["Authorization": "Bearer not-a-token-\(UUID().uuidString)"]),
                ("the SHA-256 from the config as the token", ["Authorization": "Bearer \(sha)"]),
                ("the Basic scheme", ["Authorization": "Basic " + Data("viewer:\(rig.tokens.viewer)".utf8).base64EncodedString()]),
                ("an empty bearer", ["Authorization": "Bearer "]),
                ("a valid token without the scheme", ["Authorization": rig.tokens.admin]),
            ]
            var acks = alertIDs.makeIterator()
            for endpoint in endpoints {
                for (label, headers) in invalid {
                    let path = endpoint.path.replacingOccurrences(of: "{alert}", with: String(alertIDs[0]))
                    let response = try await rig.api.request(endpoint.method, path, body: endpoint.body?.bytes, headers: headers)
                    #expect(response.status == 401, "\(endpoint.group): \(endpoint) with \(label): \(response)")
                    #expect(response.hasErrorShape, "\(endpoint) with \(label): the error shape: \(response)")
                }
                for (role, token) in [("viewer", rig.tokens.viewer), ("operator", rig.tokens.operator), ("admin", rig.tokens.admin)] {
                    let allowed = Self.roleRank[role]! >= Self.roleRank[endpoint.role]!
                    var path = endpoint.path
                    if path.contains("{alert}") {
                        let id = allowed ? (acks.next() ?? alertIDs[0]) : alertIDs[0]
                        path = path.replacingOccurrences(of: "{alert}", with: String(id))
                    }
                    let response = try await rig.api.request(endpoint.method, path, token: token, body: endpoint.body?.bytes)
                    if allowed {
                        #expect([200, 202].contains(response.status), "\(endpoint.group): \(endpoint) as \(role): \(response)")
                        #expect(response.json != nil, "JSON: \(response)")
                    } else {
                        #expect(response.status == 403, "\(endpoint.group): \(endpoint) as \(role) (needs \(endpoint.role)): \(response)")
                        #expect(response.hasErrorShape, "\(endpoint) as \(role): the error shape: \(response)")
                    }
                }
            }
            let asEnvironmentAdmin = try await rig.api.get("/api/v1/audit?limit=5", token: environmentAdmin)
            #expect(asEnvironmentAdmin.status == 200, "FLEET_CONSOLE_ADMIN_TOKEN is an admin token: \(asEnvironmentAdmin)")
            for path in ["/metrics", "/healthz"] {
                let open = try await rig.api.get(path, token: nil)
                #expect(open.status == 200, "\(path) without a token: \(open)")
            }
            // The CLI: no token, a refused role — non-zero exits with the server's message.
            let noToken = try await rig.console.runClient(["devices"], token: nil)
            #expect(!noToken.succeeded, "\(noToken)")
            let denied = try await rig.console.runClient(["audit"], token: rig.tokens.operator)
            #expect(!denied.succeeded, "\(denied)")
            let deniedByAPI = try await rig.api.get("/api/v1/audit", token: rig.tokens.operator)
            if let message = deniedByAPI.errorMessage {
                #expect((denied.standardError + denied.standardOutput).contains(message), "the server's message \"\(message)\": \(denied)")
            }
        }
    }

    @Test("a site-scoped token never sees another site's devices, alerts, usage or command results, and cannot act there")
    func siteScopedTokens() async throws {
        let n1 = Fleet.device(Fleet.north, "north-01")
        let n2 = Fleet.device(Fleet.north, "north-02")
        let s1 = Fleet.device(Fleet.south, "south-01")
        let s2 = Fleet.device(Fleet.south, "south-02")
        try await ConsoleRig.run(agents: [n1, n2, s1, s2]) { rig in
            #expect(rig.tokens.scopedSite == Fleet.north)
            // Usage at both sites, then one device offline at each (an alert at each).
            let both = try await rig.submit(
                ["action": "start_session", "params": Fleet.customSteps(seconds: 60), "targets": ["devices": ["clinic-north/north-01", "spa-south/south-01"]]],
                token: rig.tokens.admin)
            let bothID = try #require(both["id"]?.string)
            let record = try await rig.waitUntilFinished(bothID)
            #expect(record.state(of: n1) == "succeeded" && record.state(of: s1) == "succeeded", "\(record)")
            for device in [n1, s1] {
                try await rig.probe.waitForUsage(device, "usage of the session") { Ledger($0.json).completed == 1 }
            }
            try await rig.waitForUsageTotals(equalToLedgersOf: [n1, n2, s1, s2])
            for device in [n2, s2] {
                try rig.agent(device).kill()
            }
            let alertsResponse = try await rig.waitFor("/api/v1/alerts?active=true", "offline alerts at both sites") {
                let list = $0.json?["alerts"]?.array ?? []
                return !list.about(n2).isEmpty && !list.about(s2).isEmpty
            }
            let allAlerts = try #require(alertsResponse.json?["alerts"]?.array)
            #expect(allAlerts.sites == [Fleet.north, Fleet.south], "an admin sees both: \(allAlerts)")
            let northAlert = try #require(allAlerts.about(n2).first?["id"]?.int)
            let southAlert = try #require(allAlerts.about(s2).first?["id"]?.int)
            let day = "from=\(Day.string(plus: -1))&to=\(Day.string(plus: 1))"

            for (label, token) in [("site viewer", rig.tokens.siteViewer), ("site operator", rig.tokens.siteOperator)] {
                func get(_ path: String) async throws -> ConsoleResponse { try await rig.api.get(path, token: token) }

                let devices = try await get("/api/v1/devices")
                #expect(devices.status == 200, "\(label): \(devices)")
                #expect(devices.json?["devices"]?.addresses == [n1, n2], "\(label) sees clinic-north only: \(devices)")
                for path in ["/api/v1/devices?site=\(Fleet.north)", "/api/v1/devices?state=offline", "/api/v1/devices?health=ok"] {
                    let filtered = try await get(path)
                    #expect(filtered.status == 200 && filtered.json?["devices"]?.array?.sites.isSubset(of: [Fleet.north]) == true,
                            "\(label) \(path): \(filtered)")
                }
                for path in ["/api/v1/devices?site=\(Fleet.south)", "/api/v1/devices/\(Fleet.south)/south-01",
                             "/api/v1/usage?site=\(Fleet.south)&\(day)"] {
                    let denied = try await get(path)
                    #expect(denied.status == 403 && denied.hasErrorShape, "\(label) \(path): \(denied)")
                }
                let own = try await get("/api/v1/devices/\(Fleet.north)/north-01")
                #expect(own.status == 200, "\(label): \(own)")

                let sites = try await get("/api/v1/sites")
                #expect(sites.status == 200 && sites.json?["sites"]?.array?.sites == [Fleet.north], "\(label): \(sites)")

                for path in ["/api/v1/alerts?active=true", "/api/v1/alerts?active=false", "/api/v1/alerts"] {
                    let alerts = try await get(path)
                    let list = alerts.json?["alerts"]?.array
                    #expect(alerts.status == 200 && list?.sites.isSubset(of: [Fleet.north]) == true, "\(label) \(path): \(alerts)")
                }
                let activeAlerts = try await get("/api/v1/alerts?active=true")
                #expect(activeAlerts.json?["alerts"]?.array?.about(n2).isEmpty == false, "\(label) sees its own site's alert: \(activeAlerts)")

                let usage = try await get("/api/v1/usage?\(day)")
                #expect(usage.status == 200, "\(label): \(usage)")
                #expect(Set(usage.json?["totals"]?.object?.keys.map { $0 } ?? []) == [Fleet.north], "\(label) totals: \(usage)")
                let days = usage.json?["days"]?.array ?? []
                #expect(!days.isEmpty && days.sites == [Fleet.north], "\(label) days: \(usage)")

                let command = try await get("/api/v1/commands/\(bothID)")
                #expect(command.status == 200, "\(label): \(command)")
                #expect(command.json?.addresses == [n1], "\(label) sees only clinic-north's result: \(command)")
            }

            // Acting: the site operator only at its site.
            let ping: (WireJSON) -> WireJSON = { targets in ["action": "ping", "targets": targets, "ttl_s": 30] }
            for targets: WireJSON in [["site": .string(Fleet.south)], ["devices": ["spa-south/south-01"]],
                                      ["devices": ["clinic-north/north-01", "spa-south/south-01"]]] {
                let refused = try await rig.api.post("/api/v1/commands", json: ping(targets), token: rig.tokens.siteOperator)
                #expect(refused.status == 403 && refused.hasErrorShape, "targets \(targets): \(refused)")
            }
            let own = try await rig.api.post("/api/v1/commands", json: ping(["site": .string(Fleet.north)]), token: rig.tokens.siteOperator)
            #expect(own.status == 202, "\(own)")
            #expect(own.json?.addresses.allSatisfy { $0.site == Fleet.north } == true, "\(own)")
            // Refused, as 403 or as 404 (not revealing that the alert exists), and not acknowledged.
            let southAck = try await rig.api.post("/api/v1/alerts/\(southAlert)/ack", token: rig.tokens.siteOperator)
            #expect([403, 404].contains(southAck.status) && southAck.hasErrorShape, "\(southAck)")
            let southAfter = try await rig.alerts(active: true).first { $0["id"]?.int == southAlert }
            #expect(southAfter?["acknowledged_by"] == nil || southAfter?["acknowledged_by"] == .null, "\(String(describing: southAfter))")
            let northAck = try await rig.api.post("/api/v1/alerts/\(northAlert)/ack", token: rig.tokens.siteOperator)
            #expect(northAck.status == 200, "\(northAck)")
            let viewerCommand = try await rig.api.post("/api/v1/commands", json: ping(["site": .string(Fleet.north)]), token: rig.tokens.siteViewer)
            #expect(viewerCommand.status == 403, "a viewer, scoped or not, sends no command: \(viewerCommand)")

            // The CLI with a scoped token shows the same.
            let cli = try await rig.console.runClient(["devices", "--json"], token: rig.tokens.siteViewer)
            #expect(cli.succeeded, "\(cli)")
            let cliDevices = try? WireJSON.parse(cli.standardOutput)
            #expect(cliDevices?["devices"]?.addresses == [n1, n2], "\(cli.standardOutput)")
            let table = try await rig.console.runClient(["devices"], token: rig.tokens.siteViewer)
            #expect(table.succeeded && table.standardOutput.contains("north-01") && !table.standardOutput.contains("south-0"),
                    "\(table.standardOutput)")
        }
    }

    @Test("bad requests get 400 with an error naming the field; unknown things get 404; every error has the same JSON shape")
    func badRequests() async throws {
        let n1 = Fleet.device(Fleet.north, "north-01")
        try await ConsoleRig.run(agents: [n1]) { rig in
            let api = rig.api
            func expectError(
                _ response: ConsoleResponse, _ statuses: Set<Int>, naming words: [String],
                sourceLocation: SourceLocation = #_sourceLocation
            ) {
                #expect(statuses.contains(response.status), "status: \(response)", sourceLocation: sourceLocation)
                #expect(response.hasErrorShape, "{\"error\": {\"code\", \"message\"}}: \(response)", sourceLocation: sourceLocation)
                let message = response.errorMessage ?? ""
                for word in words {
                    #expect(message.contains(word), "the message names \(word): \(response)", sourceLocation: sourceLocation)
                }
            }
            let post = { (body: [UInt8]) in try await api.request("POST", "/api/v1/commands", token: rig.tokens.operator, body: body) }
            let north: WireJSON = ["site": .string(Fleet.north)]

            expectError(try await post(Array("start everything".utf8)), [400], naming: [])
            expectError(try await post(Array("[1, 2]".utf8)), [400], naming: [])
            expectError(try await post((["targets": north] as WireJSON).bytes), [400], naming: ["action"])
            expectError(try await post((["action": "ping"] as WireJSON).bytes), [400], naming: ["targets"])
            expectError(try await post((["action": "ping", "targets": [:]] as WireJSON).bytes), [400], naming: ["targets"])
            expectError(try await post((["action": "dance", "targets": north] as WireJSON).bytes), [400], naming: ["dance"])
            expectError(try await post((["action": 5, "targets": north] as WireJSON).bytes), [400], naming: ["action"])
            expectError(
                try await post((["action": "start_session", "params": ["program": 5], "targets": north] as WireJSON).bytes),
                [400], naming: ["program"])
            expectError(
                try await post((["action": "start_session", "params": ["program": "sole-vitality", "colour": "red"], "targets": north] as WireJSON).bytes),
                [400], naming: ["colour"])
            expectError(try await post((["action": "ping", "targets": north, "ttl_s": -5] as WireJSON).bytes), [400], naming: ["ttl_s"])
            expectError(try await post((["action": "ping", "targets": north, "ttl_s": "soon"] as WireJSON).bytes), [400], naming: ["ttl_s"])
            // A start may not wait days for a massager that is offline.
            expectError(
                try await post((["action": "start_session", "params": ["program": "sole-vitality"], "targets": north, "ttl_s": 86_400] as WireJSON).bytes),
                [400], naming: ["ttl_s", "max_start_ttl_s"])
            expectError(try await post((["action": "ping", "targets": ["devices": ["Not An Id!"]]] as WireJSON).bytes), [400], naming: ["devices"])
            expectError(try await post((["action": "ping", "targets": ["site": "nowhere"]] as WireJSON).bytes), [400, 404], naming: ["nowhere"])
            expectError(try await post((["action": "ping", "targets": ["idle_only": "yes", "site": .string(Fleet.north)]] as WireJSON).bytes),
                        [400], naming: ["idle_only"])

            let admin = rig.tokens.admin
            expectError(try await api.get("/api/v1/devices?state=sleeping", token: admin), [400], naming: ["state"])
            expectError(try await api.get("/api/v1/devices?health=great", token: admin), [400], naming: ["health"])
            expectError(try await api.get("/api/v1/usage?from=yesterday", token: admin), [400], naming: ["from"])
            expectError(try await api.get("/api/v1/usage?from=\(Day.string())&to=2025-13-45", token: admin), [400], naming: ["to"])
            expectError(try await api.get("/api/v1/alerts?active=maybe", token: admin), [400], naming: ["active"])
            expectError(try await api.get("/api/v1/audit?limit=-1", token: admin), [400], naming: ["limit"])
            expectError(try await api.get("/api/v1/audit?limit=many", token: admin), [400], naming: ["limit"])

            expectError(try await api.get("/api/v1/devices/\(Fleet.north)/nobody", token: admin), [404], naming: ["nobody"])
            expectError(try await api.get("/api/v1/commands/no-such-command", token: admin), [404], naming: [])
            expectError(try await api.post("/api/v1/alerts/987654/ack", token: admin), [404], naming: [])
            expectError(try await api.post("/api/v1/alerts/not-a-number/ack", token: admin), [400, 404], naming: [])
            expectError(try await api.get("/api/v1/nothing-here", token: admin), [404], naming: [])
        }
    }

    @Test("a bad config exits 2 naming every bad key; a bad flag too")
    func badConfiguration() async throws {
        let config = """
            broker:
              host: 127.0.0.1
              port: 70000
            colour: blue
            sites:
              - {id: clinic-north, name: Clinic North, timezone: Mars/Olympus_Mons}
            health:
              stale_factor: 0
            tokens:
              - {name: root, role: superuser, sha256: "\(ConsoleProcess.sha256Hex("x"))"}
              - {name: plain, role: viewer, token: hunter2}
            """
        let bad = try await ConsoleProcess.runToCompletion(config: config)
        #expect(bad.status == .exited(2), "\(bad)")
        for key in ["broker.port", "colour", "sites[0].timezone", "health.stale_factor", "tokens[0].role", "tokens[1].token"] {
            #expect(bad.standardError.contains(key), "stderr names \(key):\n\(bad.standardError)")
        }
        let flag = try await ConsoleProcess.runToCompletion(
            config: "sites:\n  - {id: lab, name: Lab, timezone: UTC}\n", arguments: ["--http", "nonsense"])
        #expect(flag.status == .exited(2), "\(flag)")
        #expect(flag.standardError.contains("--http"), "\(flag.standardError)")
    }

    @Test("a viewer or operator token without sites stops the console at start-up: exit 2, naming the key and the token")
    func tokenWithoutSites() async throws {
        let config = """
            sites:
              - {id: clinic-north, name: Clinic North, timezone: Europe/Berlin}
            tokens:
              - {name: head-office, role: admin, sha256: "\(ConsoleProcess.sha256Hex("a"))"}
              - {name: support, role: viewer, sha256: "\(ConsoleProcess.sha256Hex("b"))", sites: ["*"]}
              - {name: north-desk, role: operator, sha256: "\(ConsoleProcess.sha256Hex("c"))"}
            """
        let bad = try await ConsoleProcess.runToCompletion(config: config)
        #expect(bad.status == .exited(2), "\(bad)")
        #expect(bad.standardError.contains("tokens[2].sites"), "\(bad.standardError)")
        #expect(bad.standardError.contains("north-desk"), "\(bad.standardError)")
        #expect(!bad.standardError.contains("tokens[0]") && !bad.standardError.contains("tokens[1]"), "\(bad.standardError)")
    }

    @Test("the harness hashes tokens as SHA-256 (FIPS 180-4 test vectors)")
    func tokenDigest() {
        #expect(ConsoleProcess.sha256Hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(ConsoleProcess.sha256Hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(ConsoleProcess.sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(ConsoleProcess.sha256Hex(String(repeating: "a", count: 1000))
                == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }
}
