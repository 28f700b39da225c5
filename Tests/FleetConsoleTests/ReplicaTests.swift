import FleetTestSupport
import Foundation
import Testing

/// Console replicas on one mosquitto and one PostgreSQL database (issue 10):
/// built `fleet-console serve --replica NAME` processes, real agents.
@Suite("console replicas on PostgreSQL", .serialized, .timeLimit(.minutes(5)), .tags(.e2e, .postgres))
struct ReplicaTests {
    /// A lease this short makes the handover quick to test (the default is 10 s).
    static let leaseSeconds = 3

    /// A broker, a probe, `names.count` replicas sharing a fresh database,
    /// and `devices` as agents online in every replica's view.
    struct Cluster {
        let broker: MosquittoBroker
        let probe: FleetProbe
        let database: String
        let replicas: [ConsoleRig]
        let agents: [FleetProbe.Device: AgentProcess]

        static func run(replicas names: [String], agents devices: [FleetProbe.Device], _ body: (Cluster) async throws -> Void) async throws {
            let broker = try await MosquittoBroker.start(.init())
            defer { broker.stopNow() }
            let database = try await PostgresServer.shared().createDatabase()
            let probe = try await FleetProbe.connect(to: broker, name: "watch")
            var consoles: [ConsoleProcess] = []
            defer { for console in consoles { console.stopNow() } }
            for name in names {
                let options = ConsoleProcess.Options(
                    health: .init(commandTimeoutSeconds: 30), settings: ["replica": ["lease_s": .int(leaseSeconds)]],
                    arguments: ["--replica", name], database: database)
                consoles.append(try await ConsoleProcess.start(options, broker: broker))
            }
            var agents: [FleetProbe.Device: AgentProcess] = [:]
            defer { for agent in agents.values { agent.stopNow() } }
            let mark = probe.mark()
            for device in devices {
                agents[device] = try AgentProcess.launch(AgentProcess.Options(site: device.site, device: device.device, speed: ConsoleRig.speed), broker: broker)
            }
            let rigs = consoles.map { ConsoleRig(broker: broker, probe: probe, console: $0, agents: agents) }
            let cluster = Cluster(broker: broker, probe: probe, database: database, replicas: rigs, agents: agents)
            do {
                for agent in agents.values { try await agent.waitUntilOnline(probe, after: mark) }
                for rig in rigs {
                    for device in devices {
                        _ = try await rig.waitForDevice(device, "\(device) online in \(rig.console.options.arguments)", where: { $0["online"]?.bool == true })
                    }
                }
                try await body(cluster)
            } catch {
                await probe.close()
                let diagnostics = consoles.map { $0.diagnostics(lines: 40) }.joined(separator: "\n\n")
                throw FixtureError("\(error)\n\n\(diagnostics)")
            }
            await probe.close()
        }

        /// A Prometheus sample of `rig`'s /metrics (0 when absent).
        func metric(_ name: String, of rig: ConsoleRig) async throws -> Double {
            let response = try await rig.api.get("/metrics", token: rig.tokens.admin)
            for line in response.text.split(separator: "\n") where line.hasPrefix(name + " ") {
                return Double(line.split(separator: " ").last ?? "") ?? 0
            }
            return 0
        }

        /// The replica holding the coordinator lease (waits until exactly one does).
        func coordinator(among rigs: [ConsoleRig], timeout: Duration = .seconds(20)) async throws -> ConsoleRig {
            try await waitForValue(timeout: timeout, pollEvery: .milliseconds(100), "exactly one replica coordinates") {
                var holders: [ConsoleRig] = []
                for rig in rigs where try await metric("fleet_coordinator", of: rig) == 1 { holders.append(rig) }
                return holders.count == 1 ? holders[0] : nil
            }
        }
    }

    static let devices = (1...3).map { Fleet.device(Fleet.north, "m-\($0)") } + (1...3).map { Fleet.device(Fleet.south, "m-\($0)") }

    @Test("three replicas split ingestion, store every event exactly once, and answer the API alike")
    func splitIngestion() async throws {
        try await Cluster.run(replicas: ["r1", "r2", "r3"], agents: Self.devices) { cluster in
            let (r1, r2, r3) = (cluster.replicas[0], cluster.replicas[1], cluster.replicas[2])
            // Sessions started through two different replicas, whoever coordinates.
            var commandIDs: [String] = []
            for (rig, site) in [(r2, Fleet.north), (r3, Fleet.south)] {
                let accepted = try await rig.submit([
                    "action": "start_session", "params": Fleet.customSteps(seconds: 300), "targets": ["site": .string(site)],
                ])
                commandIDs.append(try #require(accepted["id"]?.string))
            }
            // Every result succeeds, read from a third replica.
            for id in commandIDs {
                try await r1.waitFor("/api/v1/commands/\(id)", timeout: .seconds(30), "command \(id) succeeded on every device") { response in
                    let results = response.json?["results"]?.array ?? []
                    return results.count == 3 && results.allSatisfy { $0["state"]?.string == "succeeded" }
                }
            }
            // The sessions complete on the devices.
            for device in Self.devices {
                _ = try await cluster.probe.waitForEvent(type: "session_completed", on: device, timeout: .seconds(30))
            }

            // Exactly once: every event the devices published is in the table once.
            try await waitUntil(timeout: .seconds(20), pollEvery: .milliseconds(250), "the replicas stored every event the devices published") {
                let stored = try await ConsoleEventTable.rows(database: cluster.database, devices: Self.devices)
                return Self.devices.allSatisfy { device in
                    let published = Set(cluster.probe.events(for: device).compactMap(\.stamp).map { "\($0.epoch)/\($0.seq)" })
                    let rows = stored[device] ?? []
                    return Set(rows.map { "\($0.epoch)/\($0.seq)" }) == published
                }
            }
            let stored = try await ConsoleEventTable.rows(database: cluster.database, devices: Self.devices)
            for device in Self.devices {
                #expect(stored[device]?.allSatisfy { $0.copies == 1 } == true, "\(device): \(stored[device] ?? [])")
            }
            let total = stored.values.map(\.count).reduce(0, +)

            // Split: every replica stored a share, and the shares add up to the table.
            var shares: [Double] = []
            for rig in cluster.replicas { shares.append(try await cluster.metric("fleet_events_stored_total", of: rig)) }
            #expect(shares.allSatisfy { $0 > 0 }, "each replica stored some events: \(shares)")
            #expect(Int(shares.reduce(0, +)) == total, "the replicas' stored events \(shares) add up to the \(total) rows")

            // Alike: the same devices, states and usage from every replica, once they settle.
            func view(_ rig: ConsoleRig) async throws -> String {
                let devices = try #require(try await rig.getJSON("/api/v1/devices")["devices"]?.array)
                let rows = devices.map { d in "\(d["site"]?.string ?? "")/\(d["device"]?.string ?? "") \(d["state"]?.string ?? "") online=\(d["online"]?.bool ?? false)" }
                let usage = try await rig.getJSON("/api/v1/usage")["totals"]?.text ?? "none"
                return rows.sorted().joined(separator: "\n") + "\nusage " + usage
            }
            let settled = try await waitForValue(timeout: .seconds(20), pollEvery: .milliseconds(250), "every replica shows the same fleet") {
                let views = [try await view(r1), try await view(r2), try await view(r3)]
                return Set(views).count == 1 && views[0].contains("idle") ? views[0] : nil
            }
            #expect(settled.components(separatedBy: "idle online=true").count - 1 == Self.devices.count, "\(settled)")
            for id in commandIDs {
                let answers = [try await r1.getJSON("/api/v1/commands/\(id)").text, try await r2.getJSON("/api/v1/commands/\(id)").text,
                               try await r3.getJSON("/api/v1/commands/\(id)").text]
                #expect(Set(answers).count == 1, "command \(id) reads the same from every replica: \(answers)")
            }
        }
    }

    @Test("the coordinator SIGKILLed mid-rollout and mid-command: another replica takes both over within its lease; the rollout completes and each device ran the command once")
    func handover() async throws {
        try await Cluster.run(replicas: ["r1", "r2", "r3"], agents: Self.devices) { cluster in
            let first = try await cluster.coordinator(among: cluster.replicas)
            let others = cluster.replicas.filter { $0.console.options.arguments != first.console.options.arguments }
            let entry = others[0]

            // A pending multi-device command: north's m-3 is offline, so its copy waits.
            let late = Fleet.device(Fleet.north, "m-3")
            let lateAgent = try #require(cluster.agents[late])
            try await lateAgent.stop()
            _ = try await entry.waitForDevice(late, "\(late) offline", where: { $0["online"]?.bool == false })
            let beforeCommand = cluster.probe.mark()
            let submitted = try await entry.submit([
                "action": "start_session", "params": Fleet.customSteps(seconds: 60), "targets": ["site": .string(Fleet.north)], "ttl_s": 300,
            ])
            let commandID = try #require(submitted["id"]?.string)
            try await entry.waitFor("/api/v1/commands/\(commandID)", timeout: .seconds(20), "two copies answered, one queued") { response in
                let states = (response.json?["results"]?.array ?? []).compactMap { $0["state"]?.string }.sorted()
                return states == ["queued", "succeeded", "succeeded"]
            }

            // A rollout over every device, baking long enough to be mid-way when the coordinator dies.
            let created = try await entry.createRollout([
                "name": "handover", "config": ["default_intensity": 4], "targets": RolloutFleet.bothSites,
                "waves": ["canary": 1, "percentages": [50, 100]], "bake_s": 2, "apply_timeout_s": 30,
                "error_threshold": ["percent": 50, "min_executed": 1, "action": "abort"],
            ])
            try await entry.waitForRollout(created.id, timeout: .seconds(30), "the canary wave applied") { $0.devices(in: "succeeded").count >= 1 }

            // SIGKILL the coordinator.
            first.console.kill()
            let killedAt = ContinuousClock.now
            let second = try await cluster.coordinator(among: others, timeout: .seconds(Self.leaseSeconds * 4))
            let handover = ContinuousClock.now - killedAt
            // The lease expires at most lease_s after the last renewal; the others try every lease_s / 3.
            #expect(handover <= .seconds(Double(Self.leaseSeconds) * 4 / 3 + 1), "taken over in \(handover) (lease \(Self.leaseSeconds) s)")

            // The late device returns: the new coordinator sends it its copy.
            _ = try await lateAgent.restart(probe: cluster.probe)
            try await second.waitFor("/api/v1/commands/\(commandID)", timeout: .seconds(30), "every copy succeeded") { response in
                let states = (response.json?["results"]?.array ?? []).compactMap { $0["state"]?.string }
                return states.count == 3 && states.allSatisfy { $0 == "succeeded" }
            }
            // Each device ran the command once: one session started since it was
            // submitted, the one its reply named (a copy sent again by the new
            // coordinator got the first reply and ran nothing).
            let record = try await second.getJSON("/api/v1/commands/\(commandID)")
            for device in Self.devices where device.site == Fleet.north {
                let starts = cluster.probe.events(for: device, after: beforeCommand).filter { $0.type == "session_started" }
                let replied = (record["results"]?.array ?? []).first { $0["device"]?.string == device.device }?["result"]?["session_id"]?.string
                #expect(starts.count == 1 && starts.first?.sessionID == replied, "\(device) started \(starts.map { $0.sessionID ?? "?" }), replied \(replied ?? "nothing")")
            }

            // The rollout completes under the new coordinator, every device on its version.
            let done = try await second.waitForRollout(created.id, timeout: .seconds(90), "completed") { $0.state != "running" && $0.state != "waiting_window" }
            #expect(done.state == "completed", "\(done)")
            #expect(Set(done.devices(in: "succeeded")) == Set(Self.devices), "\(done)")
            // And every replica still standing reads it the same.
            for rig in others { #expect(try await rig.rollout(created.id).state == "completed") }
            // No alert was raised twice across the handover: one per (device, type) in the whole table.
            let alerts = try #require(try await second.getJSON("/api/v1/alerts")["alerts"]?.array)
            let keys = alerts.filter { $0["cleared_at"]?.string == nil }.map { "\($0["site"]?.string ?? "")/\($0["device"]?.string ?? "-") \($0["type"]?.string ?? "")" }
            #expect(keys.count == Set(keys).count, "an active alert twice: \(keys.sorted())")
        }
    }
}
