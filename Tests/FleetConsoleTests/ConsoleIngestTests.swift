import FleetTestSupport
import Foundation
import Mosquitto
import Testing

// Ingest: exactly once by (device, epoch, seq), resync on a gap, garbage
// counted and harmless.
extension ConsoleEndToEndTests {
    @Test("QoS 1 duplicates and historical replays are stored once: a real outage's replay lands once, copies of every event and an older usage change nothing")
    func duplicatesAndReplaysStoredOnce() async throws {
        let device = Fleet.device(Fleet.north, "north-01")
        // The broker keeps sessions across its restart, so neither the
        // console nor the probe misses what the agent replays.
        try await ConsoleRig.run(broker: BrokerOptions(persistence: true), persistentProbe: true, agents: [device]) { rig in
            let probe = rig.probe
            let agent = try rig.agent(device)
            let epoch = try #require(agent.epoch)
            let programWallSeconds = 570 / ConsoleRig.speed  // sole-vitality

            // A session through the console; the broker goes away in its middle.
            let submitted = try await rig.submit([
                "action": "start_session", "params": ["program": "sole-vitality"], "targets": ["devices": ["clinic-north/north-01"]],
            ])
            let record = try await rig.waitUntilFinished(try #require(submitted["id"]?.string))
            let session = try #require(record.result(for: device)?["result"]?["session_id"]?.string, "\(record)")
            let started = try await probe.waitForEvent(type: "session_started", sessionID: session, on: device)
            try await probe.waitForEvent(type: "session_step", sessionID: session, on: device) { $0["step_index"]?.int == 1 }
            let startedAt = try #require(started.timestamp)
            try await rig.broker.stop()
            let endOnDevice = startedAt.addingTimeInterval(programWallSeconds + 2)
            try await waitUntil(timeout: .seconds(programWallSeconds + 30), "the session's end on the device is past") {
                Date() > endOnDevice
            }
            try await rig.broker.restart()

            // The replay reaches the console: one session, completed.
            let completed = try await probe.waitForEvent(type: "session_completed", sessionID: session, on: device, timeout: .seconds(30))
            #expect(completed.isHistorical, "session_completed was replayed from the outbox: \(completed)")
            try await rig.waitFor("/api/v1/devices/\(Fleet.north)/north-01", timeout: .seconds(30), "session \(session) completed") {
                let sessions = $0.json?["recent_sessions"]?.array ?? []
                return sessions.filter { $0["session_id"]?.string == session }.count == 1
                    && sessions.contains { $0["session_id"]?.string == session && $0["outcome"]?.string == "completed" }
            }
            try await rig.waitForUsageTotals(equalToLedgersOf: [device])

            // Copies of everything the agent sent: each event again as is (a
            // QoS 1 redelivery) and again marked historical (a replay of what
            // was stored), and the epoch's first usage (lower counters) replayed.
            let before = try await ConsoleSnapshot.take(rig, devices: [device])
            let events = FleetProbe.distinct(probe.events(for: device))
            try #require(events.count == 7, "started, five steps, completed: \(events)")
            let firstUsage = try #require(
                probe.usages(for: device).filter { $0.epoch == epoch }.min { ($0.seq ?? 0) < ($1.seq ?? 0) }, "a usage of epoch \(epoch)")
            let copiesMark = probe.mark()
            for event in events {
                try await probe.client.publish(event.topic, payload: event.payload, qos: .atLeastOnce)
                let replay = try #require(event.json).setting("historical", to: true)
                try await probe.client.publish(event.topic, payload: replay.bytes, qos: .atLeastOnce)
            }

            // Then a new session of the same device: once the console shows
            // it, it has ingested every copy before it (one device's stream
            // is ingested in order).
            let next = try await rig.submit([
                "action": "start_session", "params": Fleet.customSteps(seconds: 60), "targets": ["devices": ["clinic-north/north-01"]],
            ])
            let nextRecord = try await rig.waitUntilFinished(try #require(next["id"]?.string))
            let nextSession = try #require(nextRecord.result(for: device)?["result"]?["session_id"]?.string, "\(nextRecord)")
            try await probe.waitForEvent(type: "session_completed", sessionID: nextSession, on: device)
            try await rig.waitFor("/api/v1/devices/\(Fleet.north)/north-01", "session \(nextSession) completed") {
                ($0.json?["recent_sessions"]?.array ?? []).contains {
                    $0["session_id"]?.string == nextSession && $0["outcome"]?.string == "completed"
                }
            }
            try await rig.waitForUsageTotals(equalToLedgersOf: [device])

            // The epoch's first usage again, late: older by (epoch, seq), with
            // lower counters than the device's ledger now. It is history, not a reset.
            let olderUsage = try #require(firstUsage.json).setting("historical", to: true)
            try #require(Ledger(olderUsage) != Ledger(probe.latestUsage(device)?.json), "the replayed usage must be an older ledger")
            try await probe.client.publish(firstUsage.topic, payload: olderUsage.bytes, qos: .atLeastOnce)
            try await rig.barrier()
            let after = try await ConsoleSnapshot.take(rig, devices: [device])
            let totals = try await rig.getJSON("/api/v1/usage?from=\(Day.string(plus: -1))&to=\(Day.string(plus: 1))")["totals"]
            #expect(Ledger(totals?[Fleet.north]) == Ledger(probe.latestUsage(device)?.json),
                    "an older usage replayed late changes nothing: console \(Ledger(totals?[Fleet.north])), device \(Ledger(probe.latestUsage(device)?.json))")
            #expect(Ledger(after.details["\(device)"]?["usage"]) == Ledger(probe.latestUsage(device)?.json),
                    "the device's usage is its latest ledger: \(after.details["\(device)"]?["usage"] ?? .null)")

            // Exactly one more session, nothing else.
            let sessionsBefore = before.sessions(of: device)
            let sessionsAfter = after.sessions(of: device)
            #expect(sessionsAfter.map { $0["session_id"]?.string ?? "?" }.sorted()
                    == (sessionsBefore.map { $0["session_id"]?.string ?? "?" } + [nextSession]).sorted(),
                    "sessions before \(sessionsBefore), after \(sessionsAfter)")
            for old in sessionsBefore {
                #expect(sessionsAfter.contains(old), "\(old) unchanged by the copies; after: \(sessionsAfter)")
            }
            #expect(after.metric("fleet_sessions_total") == before.metric("fleet_sessions_total") + 1,
                    "one session more:\n\(before.metrics)\n→\n\(after.metrics)")
            #expect(after.metricLines(["fleet_session_aborts_total"]) == before.metricLines(["fleet_session_aborts_total"]))
            let resyncs = probe.messages(for: device, kind: "cmd", after: copiesMark).filter { $0["action"]?.string == "resync" }
            #expect(resyncs.isEmpty, "duplicates and replays are not gaps: \(resyncs)")

            // Stored once: the console's own store, read after a graceful stop.
            let distinctStamps = Set(probe.events(for: device).compactMap(\.stamp)).count
            #expect(try await rig.console.stop() == .exited(0))
            #if canImport(FleetConsole)
            let stored = try await ConsoleStoreAccess.eventCount(database: rig.console.database, site: device.site, device: device.device)
            #expect(stored == distinctStamps, "events stored for \(device): \(stored); distinct (epoch, seq) on the wire: \(distinctStamps)")
            #endif
        }
    }

    @Test("a gap in a device's events makes the console send it one resync; a telemetry gap, a late replay and late arrivals ask for nothing")
    func eventGapTriggersResync() async throws {
        try await ConsoleRig.run(agents: []) { rig in
            let ghost = try await CraftedDevice.connect(Fleet.device(Fleet.lab, "ghost"), broker: rig.broker, epoch: 4)
            try await rig.waitForDevice(ghost.device, "the crafted device online at epoch 4") {
                $0["online"]?.bool == true && $0["epoch"]?.int == 4
            }
            let idle: WireJSON = ["session_state": "idle", "pressure_mmhg": [:], "motor_temp_c": 30, "faults": [], "interval_s": 1]
            func session(_ type: String, _ id: String, _ extra: WireJSON = [:]) -> WireJSON {
                (["type": .string(type), "session_id": .string(id), "program": "sole-vitality", "source": "remote"] as WireJSON).merging(extra)
            }

            // In order, a telemetry gap, and a late replay of the previous epoch: nothing to ask.
            try await ghost.publish("telemetry", idle, seq: 1, retain: false)
            try await ghost.publish("events", session("session_started", "s-4-0001"), seq: 1)
            try await ghost.publish("events", session("session_completed", "s-4-0001", ["elapsed_s": 570]), seq: 2)
            try await ghost.publish("telemetry", idle, seq: 5, retain: false)
            try await ghost.publish(
                "events", session("session_aborted", "s-3-0009", ["reason": "remote_stop", "elapsed_s": 60]), seq: 17, epoch: 3,
                historical: true)
            try await rig.barrier()
            #expect(ghost.commands(action: "resync").isEmpty, "nothing to resync yet: \(ghost.commands)")

            // seq 3 and 4 never come: a gap of two events.
            try await ghost.publish("events", session("session_started", "s-4-0002"), seq: 5)
            let resync = try await ghost.waitForCommand(action: "resync")
            let command = try WireJSON.parse(resync.payload)
            #expect(command["id"]?.string?.isEmpty == false, "a command id: \(command)")
            #expect(command["action"]?.string == "resync", "\(command)")
            #expect(resync.properties.responseTopic != nil || command["reply_to"]?.string != nil,
                    "the console says where to reply: \(command), \(resync.properties)")
            try await ghost.reply(to: resync, result: ["republished": ["status", "usage", "config/reported"]])
            try await ghost.publish("status", ghost.birth, retain: true)

            // The missing ones arrive late, then the session goes on: no second resync.
            try await ghost.publish("events", ["type": "fault_raised", "fault": "pressure_sensor", "message": "crafted"], seq: 3)
            try await ghost.publish("events", ["type": "fault_cleared", "fault": "pressure_sensor"], seq: 4)
            try await ghost.publish("events", session("session_completed", "s-4-0002", ["elapsed_s": 570]), seq: 6)
            try await rig.waitFor("/api/v1/devices/\(Fleet.lab)/ghost", "both sessions of epoch 4 completed") {
                let sessions = $0.json?["recent_sessions"]?.array ?? []
                return ["s-4-0001", "s-4-0002"].allSatisfy { id in
                    sessions.contains { $0["session_id"]?.string == id && $0["outcome"]?.string == "completed" }
                }
            }
            try await rig.barrier()
            #expect(ghost.commands(action: "resync").count == 1, "one resync for one gap: \(ghost.commands.count) commands")
            #expect(ghost.commands.count == 1, "and no other command: \(ghost.commands.map { String(decoding: $0.payload, as: UTF8.self) })")
            await ghost.close()
        }
    }

    @Test("a second gap within the resync interval is not dropped: the console asks again once the interval has passed, and stops once the missing events arrived")
    func gapWithinResyncIntervalIsAskedLater() async throws {
        let interval = 3.0
        try await ConsoleRig.run(console: { $0.health.resyncIntervalSeconds = interval }, agents: []) { rig in
            let ghost = try await CraftedDevice.connect(Fleet.device(Fleet.lab, "ghost-2"), broker: rig.broker, epoch: 2)
            try await rig.waitForDevice(ghost.device, "the crafted device online at epoch 2") {
                $0["online"]?.bool == true && $0["epoch"]?.int == 2
            }
            let fault: WireJSON = ["type": "fault_raised", "fault": "pressure_sensor", "message": "crafted"]
            let clock = ContinuousClock()
            try await ghost.publish("events", fault, seq: 1)
            try await ghost.publish("events", fault, seq: 3) // gap: 2
            let first = try await ghost.waitForCommand(action: "resync")
            let firstAt = clock.now
            try await ghost.reply(to: first, result: ["republished": ["status", "usage", "config/reported", "events"]])
            try await ghost.publish("events", fault, seq: 5) // another gap, 4, right away: too soon to ask
            try await rig.barrier()
            #expect(ghost.commands(action: "resync").count == 1, "one resync until the interval has passed")
            try await waitUntil(timeout: .seconds(20), "a second resync after the interval") { ghost.commands(action: "resync").count >= 2 }
            let secondAt = clock.now
            #expect(firstAt.duration(to: secondAt) >= .seconds(interval), "not before the interval: \(firstAt.duration(to: secondAt))")
            // The device sends what was missing: nothing more to ask.
            try await ghost.publish("events", fault, seq: 2, historical: true)
            try await ghost.publish("events", fault, seq: 4, historical: true)
            try await rig.barrier()
            // That no third one follows is the ingest core's (IngestCoreTests.owedResyncs, on a manual clock).
            await ghost.close()
        }
    }

    @Test("a resync that fills nothing (lost with the broker, or the device no longer has the events) is asked again, at most three times in all")
    func unfilledGapIsAskedAgainBounded() async throws {
        let interval = 1.0
        try await ConsoleRig.run(console: { $0.health.resyncIntervalSeconds = interval }, agents: []) { rig in
            let ghost = try await CraftedDevice.connect(Fleet.device(Fleet.lab, "ghost-3"), broker: rig.broker, epoch: 2)
            try await rig.waitForDevice(ghost.device, "the crafted device online at epoch 2") {
                $0["online"]?.bool == true && $0["epoch"]?.int == 2
            }
            let fault: WireJSON = ["type": "fault_raised", "fault": "pressure_sensor", "message": "crafted"]
            try await ghost.publish("events", fault, seq: 1)
            try await ghost.publish("events", fault, seq: 4) // 2 and 3 never come
            try await waitUntil(timeout: .seconds(20), "three resyncs") { ghost.commands(action: "resync").count >= 3 }
            // That no fourth one follows is the ingest core's (IngestCoreTests.owedResyncs, on a manual clock).
            await ghost.close()
        }
    }

    @Test("a console restarted with a gap open still asks for it: the missing events are found in the event table at start-up")
    func gapSurvivesConsoleRestart() async throws {
        try await ConsoleRig.run(console: { $0.health.resyncIntervalSeconds = 1 }, agents: []) { rig in
            let ghost = try await CraftedDevice.connect(Fleet.device(Fleet.lab, "ghost-4"), broker: rig.broker, epoch: 2)
            try await rig.waitForDevice(ghost.device, "the crafted device online at epoch 2") {
                $0["online"]?.bool == true && $0["epoch"]?.int == 2
            }
            let fault: WireJSON = ["type": "fault_raised", "fault": "pressure_sensor", "message": "crafted"]
            try await ghost.publish("events", fault, seq: 1)
            try await ghost.publish("events", fault, seq: 3) // 2 never comes
            _ = try await ghost.waitForCommand(action: "resync")
            try await rig.barrier()
            let before = ghost.commands(action: "resync").count
            #expect(try await rig.console.stop() == .exited(0), "SIGTERM: a clean exit")
            try await rig.console.restart()
            try await waitUntil(timeout: .seconds(20), "a resync from the restarted console") { ghost.commands(action: "resync").count > before }
            // The missing event arrives: no more asking.
            try await ghost.publish("events", fault, seq: 2, historical: true)
            try await rig.barrier()
            // The restarted console read the hole from the event table; once filled, it asks nothing more (IngestCoreTests.owedResyncs).
            await ghost.close()
        }
    }

    @Test("the latest state wins by (epoch, seq), not by arrival: an older status or reported config arriving late changes nothing")
    func latestStateWinsBySequence() async throws {
        try await ConsoleRig.run(agents: []) { rig in
            let late = try await CraftedDevice.connect(Fleet.device(Fleet.lab, "late-01"), broker: rig.broker, epoch: 2, online: false)
            let birth = try await late.publish("status", late.birth, seq: 1, retain: true)
            try await rig.waitForDevice(late.device, "online at epoch 2") { $0["online"]?.bool == true && $0["epoch"]?.int == 2 }
            let applied = try await late.publish("config/reported", ["version": 3, "state": "applied", "applied_version": 3], seq: 1)
            try await late.publish(
                "config/reported",
                ["version": 4, "state": "rejected", "applied_version": 3, "error": "crafted", "reasons": ["config.colour: unknown key"]],
                seq: 2)
            try await late.publish("status", ["state": "offline", "reason": "shutdown", "agent_version": "crafted"], seq: 3, retain: true)
            try await rig.waitFor("/api/v1/devices/\(Fleet.lab)/late-01", "offline, reported version 4 rejected") {
                $0.json?["device"]?["online"]?.bool == false && $0.json?["reported_config"]?["version"]?.int == 4
            }

            // Late: a QoS 1 redelivery of the birth, a replay of the first report, and a status of the previous epoch.
            try await rig.probe.client.publish(late.topic("status"), payload: birth.bytes, qos: .atLeastOnce)
            try await rig.probe.client.publish(
                late.topic("config/reported"), payload: applied.setting("historical", to: true).bytes, qos: .atLeastOnce)
            try await rig.probe.client.publish(
                late.topic("status"), payload: late.stamped("status", late.birth, seq: 9, epoch: 1).bytes, qos: .atLeastOnce)
            try await rig.barrier()
            let detail = try await rig.getJSON("/api/v1/devices/\(Fleet.lab)/late-01")
            #expect(detail["device"]?["online"]?.bool == false && detail["device"]?["state"]?.string == "offline",
                    "the shutdown (seq 3) stays the device's state: \(detail["device"] ?? .null)")
            #expect(detail["device"]?["epoch"]?.int == 2, "\(detail["device"] ?? .null)")
            #expect(detail["reported_config"]?["version"]?.int == 4 && detail["reported_config"]?["state"]?.string == "rejected",
                    "the report of seq 2 stays current: \(detail["reported_config"] ?? .null)")
            await late.close()
        }
    }

    @Test("garbage on every topic — random bytes, wrong JSON, huge payloads, bad topics — changes nothing and is counted")
    func garbageChangesNothing() async throws {
        let n1 = Fleet.device(Fleet.north, "north-01")
        let s1 = Fleet.device(Fleet.south, "south-01")
        try await ConsoleRig.run(agents: [n1, s1]) { rig in
            let probe = rig.probe
            let epoch = try #require(try rig.agent(n1).epoch)

            // Something to protect: a finished session on each device, its usage, an alert-free fleet.
            let submitted = try await rig.submit([
                "action": "start_session", "params": Fleet.customSteps(seconds: 60),
                "targets": ["devices": ["clinic-north/north-01", "spa-south/south-01"]],
            ])
            let record = try await rig.waitUntilFinished(try #require(submitted["id"]?.string))
            for device in [n1, s1] {
                let session = try #require(record.result(for: device)?["result"]?["session_id"]?.string, "\(record)")
                try await rig.waitFor("/api/v1/devices/\(device.site)/\(device.device)", "\(session) completed") {
                    ($0.json?["recent_sessions"]?.array ?? []).contains {
                        $0["session_id"]?.string == session && $0["outcome"]?.string == "completed"
                    }
                }
            }
            try await rig.waitForUsageTotals(equalToLedgersOf: [n1, s1])
            let metricsBefore = try await rig.metrics()
            for name in ["fleet_ingest_malformed_total", "fleet_ingest_messages_total", "fleet_ingest_lag_seconds"] {
                #expect(metricsBefore.has(name), "/metrics has \(name):\n\(metricsBefore)")
            }
            let before = try await ConsoleSnapshot.take(rig, devices: [n1, s1])
            let malformedBefore = metricsBefore.sum("fleet_ingest_malformed_total")

            // The garbage, at QoS 1 (so it reaches the console in this order), never retained.
            let mark = probe.mark()
            var published = 0
            func send(_ topic: String, _ payload: [UInt8]) async throws {
                try await probe.client.publish(topic, payload: payload, qos: .atLeastOnce)
                published += 1
            }
            for kind in ["status", "telemetry", "events", "usage", "config/reported"] {
                for payload in Garbage.payloads(for: kind, epoch: epoch) {
                    try await send(probe.topic(kind, for: n1), payload)
                }
            }
            let stranger = Fleet.device(Fleet.north, "nobody")
            for payload in Garbage.payloads(for: "status", epoch: 1) {
                try await send(probe.topic("status", for: stranger), payload)
            }
            let validStatus: WireJSON = [
                "state": "online", "agent_version": "crafted", "epoch": 1, "seq": 1, "ts": .string(FleetProbe.timestamp(Date())),
                "programs": [], "config_version": 0, "capabilities": [],
            ]
            for topic in Garbage.badTopics {
                try await send(topic, validStatus.bytes)
            }

            // Counted, every one of them…
            try await rig.waitFor("/metrics", timeout: .seconds(30), "fleet_ingest_malformed_total up by \(published)") {
                PrometheusText($0.text).sum("fleet_ingest_malformed_total") >= malformedBefore + Double(published)
            }
            try await rig.barrier()
            let metricsAfter = try await rig.metrics()
            #expect(metricsAfter.sum("fleet_ingest_malformed_total") - malformedBefore == Double(published),
                    "each of the \(published) garbage messages counted once")

            // …and nothing changed.
            let after = try await ConsoleSnapshot.take(rig, devices: [n1, s1])
            #expect(after == before, "the console's picture changed:\n\(before)\n→\n\(after)")
            let clinics = try await rig.devices().filter { $0["site"]?.string != Fleet.lab }
            #expect(clinics.addresses == [n1, s1], "no device made up from garbage topics: \(clinics)")
            let strangerResponse = try await rig.api.get("/api/v1/devices/\(Fleet.north)/nobody", token: rig.tokens.admin)
            #expect(strangerResponse.status == 404 && strangerResponse.hasErrorShape, "\(strangerResponse)")
            let commands = probe.messages(for: n1, kind: "cmd", after: mark)
            #expect(commands.isEmpty, "garbage made the console send nothing to \(n1): \(commands)")
            #expect(rig.console.isRunning)

            // Ingest still works: a new session shows up.
            let next = try await rig.submit([
                "action": "start_session", "params": Fleet.customSteps(seconds: 30), "targets": ["devices": ["clinic-north/north-01"]],
            ])
            let nextRecord = try await rig.waitUntilFinished(try #require(next["id"]?.string))
            let session = try #require(nextRecord.result(for: n1)?["result"]?["session_id"]?.string, "\(nextRecord)")
            try await rig.waitFor("/api/v1/devices/\(Fleet.north)/north-01", "\(session) completed after the garbage") {
                ($0.json?["recent_sessions"]?.array ?? []).contains {
                    $0["session_id"]?.string == session && $0["outcome"]?.string == "completed"
                }
            }
        }
    }
}

// MARK: - Garbage

enum Garbage {
    /// Bytes from a fixed-seed generator (SplitMix64), so a failure is reproducible.
    static func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            for shift in stride(from: 0, to: 64, by: 8) where out.count < count {
                out.append(UInt8(truncatingIfNeeded: z >> UInt64(shift)))
            }
        }
        return out
    }

    /// Everything a device topic of `kind` must survive. Messages with a
    /// plausible envelope use the device's real `epoch` and a `seq` far
    /// ahead, so a console that looked at the envelope before refusing the
    /// body would see a gap (and send a resync).
    static func payloads(for kind: String, epoch: Int) -> [[UInt8]] {
        let now = FleetProbe.timestamp(Date())
        func stamped(_ body: WireJSON, seq: Int) -> [UInt8] {
            body.setting("ts", to: .string(now)).setting("epoch", to: .int(epoch)).setting("seq", to: .int(seq)).bytes
        }
        var list: [[UInt8]] = [
            randomBytes(64, seed: 1),
            randomBytes(1 << 20, seed: 2),  // huge, not JSON
            Array("not json at all".utf8),
            Array("{\"state\":".utf8),  // truncated
            Array("[]".utf8), Array("42".utf8), Array("null".utf8), Array("\"online\"".utf8), Array("{}".utf8),
            Array(String(repeating: "[", count: 10_000).utf8),  // nested far beyond any limit
            [0x7B, 0x22, 0x73, 0x74, 0x61, 0x74, 0x65, 0x22, 0x3A, 0x22, 0xFF, 0xFE, 0x22, 0x7D],  // {"state":"<invalid UTF-8>"}
            Array(#"{"ts":"yesterday","epoch":"seven","seq":-1}"#.utf8),
            stamped(["state": "online", "agent_version": "x", "programs": [], "config_version": 0, "capabilities": []], seq: 900_001)
                .replacingTimestamp(with: "2025-02-30T10:00:00.000Z", original: now),  // an impossible date
            // Over the 256 KiB limit, otherwise plausible.
            stamped(["state": "online", "agent_version": .string(String(repeating: "x", count: 300 * 1024))], seq: 900_002),
        ]
        switch kind {
        case "status":
            list.append(stamped(["state": "sleeping"], seq: 900_003))
            list.append(stamped(["state": 5], seq: 900_004))
        case "telemetry":
            list.append(stamped(["session_state": "running", "pressure_mmhg": "high", "motor_temp_c": "hot", "faults": "none"], seq: 900_003))
        case "events":
            list.append(Array(#"{"type":"session_started"}"#.utf8))  // no envelope, no session
            list.append(stamped(["type": 7, "session_id": ["nested"]], seq: 900_003))
        case "usage":
            list.append(stamped(["sessions": ["started": "many", "completed": -5, "aborted": []], "seconds": "lots"], seq: 900_003))
        case "config/reported":
            list.append(stamped(["version": -1, "state": "exploded"], seq: 900_003))
        default:
            break
        }
        return list
    }

    /// Topics under the root that are not a device topic of the contract
    /// (bad ids, wrong depth, unknown kinds).
    static let badTopics: [String] = [
        "massage/v1/Clinic-North/north-01/status",
        "massage/v1/clinic-north/NORTH-01/telemetry",
        "massage/v1/-bad/north-01/status",
        "massage/v1/clinic north/north-01/status",
        "massage/v1/clinic-north/north 01/status",
        "massage/v1/clinic-north/" + String(repeating: "d", count: 64) + "/status",
        "massage/v1/clinic-north//status",
        "massage/v1/clinic-north/north-01/status/extra",
        "massage/v1/clinic-north/north-01/bogus",
        "massage/v1/clinic-north/north-01",
        "massage/v1/clinic-north",
    ]
}

extension [UInt8] {
    func replacingTimestamp(with bad: String, original: String) -> [UInt8] {
        Array(String(decoding: self, as: UTF8.self).replacingOccurrences(of: original, with: bad).utf8)
    }
}

// MARK: - What the console shows, minus what changes by itself

/// The console's picture of some devices, without the fields live telemetry
/// moves (`last_seen`, `telemetry`, `telemetry_at`): device summaries and
/// details, active alerts, usage totals and days, sites, and the fleet
/// metrics (not the ingest counters).
struct ConsoleSnapshot: Equatable, CustomStringConvertible {
    var details: [String: WireJSON]
    var alerts: [WireJSON]
    var usage: WireJSON
    var sites: [WireJSON]
    var metrics: [String]

    static let fleetMetrics = ["fleet_devices", "fleet_sessions_total", "fleet_session_aborts_total", "fleet_alerts_active"]

    static func take(_ rig: ConsoleRig, devices: [FleetProbe.Device]) async throws -> ConsoleSnapshot {
        var details: [String: WireJSON] = [:]
        for device in devices {
            var detail = try await rig.getJSON("/api/v1/devices/\(device.site)/\(device.device)")
            detail = detail.removing("telemetry").removing("telemetry_at")
            if let summary = detail["device"] { detail = detail.setting("device", to: summary.removing("last_seen")) }
            details["\(device)"] = detail
        }
        let alerts = try await rig.alerts(active: true).filter { $0["site"]?.string != Fleet.lab }
        let sites = Set(devices.map(\.site))
        let usage = try await rig.getJSON("/api/v1/usage?from=\(Day.string(plus: -1))&to=\(Day.string(plus: 1))")
        let filteredUsage: WireJSON = [
            "days": .array((usage["days"]?.array ?? []).filter { sites.contains($0["site"]?.string ?? "") }),
            "totals": .object((usage["totals"]?.object ?? [:]).filter { sites.contains($0.key) }),
        ]
        let siteList = (try await rig.getJSON("/api/v1/sites")["sites"]?.array ?? []).filter { sites.contains($0["site"]?.string ?? "") }
        // The device gauges follow the console's health tick (every second): wait until they
        // agree with the API state by state, or a session that ended within the last tick
        // would still count as in_session in one snapshot and not in the next.
        let states = ["in_session", "idle", "offline", "faulted"]
        var perSite: [String: [String: Int]] = [:]
        for site in sites {
            let listed = try await rig.devices("?site=\(site)")
            perSite[site] = Dictionary(uniqueKeysWithValues: states.map { state in (state, listed.filter { $0["state"]?.string == state }.count) })
        }
        // Every state of every site is exposed (the first tick registers them together), and each agrees.
        let settled = try await rig.waitForMetrics("fleet_devices has every state and agrees with the API: \(perSite)") { metrics in
            perSite.allSatisfy { site, byState in
                states.allSatisfy { metrics.value("fleet_devices", ["site": site, "state": $0]) == Double(byState[$0] ?? 0) }
            }
        }
        let metrics = settled.lines(of: fleetMetrics).filter { !$0.contains("site=\"\(Fleet.lab)\"") }
        return ConsoleSnapshot(details: details, alerts: alerts, usage: filteredUsage, sites: siteList, metrics: metrics)
    }

    func sessions(of device: FleetProbe.Device) -> [WireJSON] {
        details["\(device)"]?["recent_sessions"]?.array ?? []
    }

    func metric(_ name: String) -> Double {
        PrometheusText(metrics.joined(separator: "\n")).sum(name)
    }

    func metricLines(_ names: [String]) -> [String] {
        metrics.filter { line in names.contains { line.hasPrefix($0 + "{") || line.hasPrefix($0 + " ") } }
    }

    var description: String {
        "details: \(details.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "\n  "))\n"
            + "alerts: \(alerts)\nusage: \(usage)\nsites: \(sites)\nmetrics:\n  \(metrics.joined(separator: "\n  "))"
    }
}

extension ConsoleRig {
    /// Waits until `GET /api/v1/usage` totals of each site equal the sum of
    /// the latest ledgers (by `(epoch, seq)`) the agents of `devices`
    /// published, and returns the totals by site.
    @discardableResult
    func waitForUsageTotals(equalToLedgersOf devices: [FleetProbe.Device], timeout: Duration = .seconds(30)) async throws -> [String: Ledger] {
        let probe = self.probe
        func expected() -> [String: Ledger] {
            var bySite: [String: Ledger] = [:]
            for device in devices {
                bySite[device.site] = (bySite[device.site] ?? Ledger()) + Ledger(probe.latestUsage(device)?.json)
            }
            return bySite
        }
        let path = "/api/v1/usage?from=\(Day.string(plus: -1))&to=\(Day.string(plus: 1))"
        try await waitFor(path, timeout: timeout, "usage totals equal to the agents' ledgers \(expected())") { response in
            let totals = response.json?["totals"]
            return expected().allSatisfy { site, ledger in Ledger(totals?[site]) == ledger }
        }
        return expected()
    }
}
