import FleetTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Remote commands: a site-wide start with its per-device results, the CLI
// showing them, and records surviving console restarts.
extension ConsoleEndToEndTests {
    @Test("a site-wide start reaches every online device; the busy one fails busy, the offline one expires, the silent one times out; the CLI shows the same")
    func siteWideStart() async throws {
        let n1 = Fleet.device(Fleet.north, "north-01")
        let n2 = Fleet.device(Fleet.north, "north-02")
        let n3 = Fleet.device(Fleet.north, "north-03")  // busy
        let n4 = Fleet.device(Fleet.north, "north-04")  // offline
        let s1 = Fleet.device(Fleet.south, "south-01")
        let s2 = Fleet.device(Fleet.south, "south-02")
        let program = "plantar-relief"  // 810 s: 8.1 s at speed 100
        try await ConsoleRig.run(console: { $0.health.commandTimeoutSeconds = 3 }, agents: [n1, n2, n3, n4, s1, s2]) { rig in
            let probe = rig.probe
            // A device that is online and never answers.
            let mute = try await CraftedDevice.connect(Fleet.device(Fleet.north, "north-mute"), broker: rig.broker)
            try await rig.waitForDevice(mute.device, "the silent device online") { $0["online"]?.bool == true }

            // Busy: a long session on north-03, started through the console.
            let busyStart = try await rig.submit([
                "action": "start_session", "params": Fleet.longSession, "targets": ["devices": ["clinic-north/north-03"]],
            ])
            let busyRecord = try await rig.waitUntilFinished(try #require(busyStart["id"]?.string))
            try #require(busyRecord.state(of: n3) == "succeeded", "\(busyRecord)")
            let busySession = try #require(busyRecord.result(for: n3)?["result"]?["session_id"]?.string, "\(busyRecord)")
            try await rig.waitForDevice(n3, "north-03 in its session") {
                $0["state"]?.string == "in_session" && $0["session"]?["session_id"]?.string == busySession
            }

            // Offline: north-04 killed.
            let offlineAgent = try rig.agent(n4)
            offlineAgent.kill()
            try await offlineAgent.waitForExit()
            try await rig.waitForDevice(n4, "north-04 offline, with its alert") {
                $0["online"]?.bool == false && $0["state"]?.string == "offline" && $0["alerts"]?.array?.contains("offline") == true
            }

            // The site-wide start.
            let mark = probe.mark()
            let ttl = 6.0
            let submitted = try await rig.submit([
                "action": "start_session", "params": ["program": .string(program)], "targets": ["site": .string(Fleet.north)],
                "ttl_s": .double(ttl),
            ])
            let id = try #require(submitted["id"]?.string)
            #expect(submitted["action"]?.string == "start_session", "\(submitted)")
            #expect(submitted["params"]?["program"]?.string == program, "\(submitted)")
            #expect(submitted["created_by"]?.string == "operator", "the token's name is the author: \(submitted)")
            let createdAt = try #require(submitted["created_at"]?.string.flatMap(FleetProbe.date(from:)), "\(submitted)")
            let expiresAt = try #require(submitted["expires_at"]?.string.flatMap(FleetProbe.date(from:)), "\(submitted)")
            #expect(abs(expiresAt.timeIntervalSince(createdAt) - ttl) < 1, "expires_at = created_at + ttl_s: \(submitted)")
            #expect(submitted.addresses == [n1, n2, n3, n4, mute.device], "every device of the site and no other: \(submitted)")
            for result in submitted["results"]?.array ?? [] {
                #expect(CommandStates.all.contains(result["state"]?.string ?? ""), "\(result)")
            }
            #expect(submitted.state(of: n4) == "queued", "an offline device's command waits, queued: \(submitted)")

            // The idle online devices start, and the console sees them in session.
            let started = try await rig.waitForCommand(id, "north-01 and north-02 succeeded") {
                $0.state(of: n1) == "succeeded" && $0.state(of: n2) == "succeeded"
            }
            #expect(started.state(of: n4) == "queued", "\(started)")
            var sessions: [FleetProbe.Device: String] = [:]
            for device in [n1, n2] {
                let session = try #require(started.result(for: device)?["result"]?["session_id"]?.string, "\(started)")
                sessions[device] = session
                try await probe.waitForEvent(type: "session_started", sessionID: session, on: device)
                try await rig.waitForDevice(device, "\(device) in session \(session)") {
                    $0["state"]?.string == "in_session" && $0["session"]?["session_id"]?.string == session
                }
            }
            let inSession = try await rig.devices("?site=\(Fleet.north)&state=in_session")
            #expect(inSession.addresses == [n1, n2, n3], "state=in_session: \(inSession)")
            let offline = try await rig.devices("?site=\(Fleet.north)&state=offline")
            #expect(offline.addresses == [n4], "state=offline: \(offline)")
            let south = try await rig.devices("?site=\(Fleet.south)")
            #expect(south.addresses == [s1, s2], "site=spa-south: \(south)")
            let healthy = try await rig.devices("?health=ok")
            #expect(!healthy.addresses.contains(n4), "an offline device is not health=ok: \(healthy)")
            let metrics = try await rig.waitForMetrics("fleet_devices{site=clinic-north,state=offline} 1") {
                $0.value("fleet_devices", ["site": Fleet.north, "state": "offline"]) == 1
            }
            #expect(metrics.value("fleet_devices", ["site": Fleet.north]) == 5, "five devices at clinic-north: \(metrics)")
            #expect(metrics.value("fleet_devices", ["site": Fleet.south]) == 2, "\(metrics)")

            // Every result ends.
            let final = try await rig.waitUntilFinished(id, timeout: .seconds(ttl + 20))
            for device in [n1, n2] {
                #expect(final.state(of: device) == "succeeded", "\(final)")
                #expect(final.result(for: device)?["result"]?["session_id"]?.string == sessions[device], "\(final)")
            }
            let busy = try #require(final.result(for: n3), "\(final)")
            #expect(busy["state"]?.string == "failed", "\(final)")
            #expect(busy["error"]?["code"]?.string == "busy", "failed: busy: \(busy)")
            #expect(busy["error"]?["message"]?.string?.contains(busySession) == true, "the device's own message: \(busy)")
            #expect(final.state(of: n4) == "expired", "offline until expires_at: \(final)")
            #expect(final.state(of: mute.device) == "timed_out", "sent, never answered: \(final)")
            for result in final["results"]?.array ?? [] {
                #expect(result["updated_at"]?.string.flatMap(FleetProbe.date(from:)) != nil, "updated_at: \(result)")
            }
            #expect(mute.commands(action: "start_session").count == 1, "the silent device was sent the command once")
            for device in [s1, s2] {
                #expect(probe.messages(for: device, kind: "cmd", after: mark).isEmpty, "nothing went to the other site's \(device)")
            }

            // north-04 comes back after expires_at: the stale start never runs.
            let back = probe.mark()
            try await offlineAgent.restart(probe: probe)
            try await rig.waitForDevice(n4, "north-04 back online") { $0["online"]?.bool == true }
            try await rig.barrier()
            let afterReturn = try await rig.getJSON("/api/v1/commands/\(id)")
            #expect(afterReturn.state(of: n4) == "expired", "a final result stays final: \(afterReturn)")
            let sentToReturned = probe.messages(for: n4, kind: "cmd", after: back).filter { $0["action"]?.string == "start_session" }
            #expect(sentToReturned.isEmpty, "an expired command is not sent to a device that returns: \(sentToReturned)")
            #expect(probe.events(for: n4, after: back).filter { $0.type == "session_started" }.isEmpty)

            // The CLI shows the same results: as JSON, exactly the API's record…
            let apiRecord = try await rig.getJSON("/api/v1/commands/\(id)", token: rig.tokens.viewer)
            let cliJSON = try await rig.console.runClient(["command", "--show", id, "--json"], token: rig.tokens.viewer)
            #expect(cliJSON.succeeded, "\(cliJSON)")
            #expect((try? WireJSON.parse(cliJSON.standardOutput)) == apiRecord, "CLI --json vs the API:\n\(cliJSON.standardOutput)\nvs\n\(apiRecord)")
            // …and as a table: one line per device with its state (and the device's error code).
            let cliTable = try await rig.console.runClient(["command", "--show", id], token: rig.tokens.viewer)
            #expect(cliTable.succeeded, "\(cliTable)")
            let expectations: [(FleetProbe.Device, [String])] = [
                (n1, ["succeeded"]), (n2, ["succeeded"]), (n3, ["failed", "busy"]), (n4, ["expired"]), (mute.device, ["timed"]),
            ]
            for (device, words) in expectations {
                let line = cliTable.standardOutput.split(separator: "\n").first { $0.contains(device.device) }
                #expect(line != nil, "no line for \(device) in\n\(cliTable.standardOutput)")
                for word in words {
                    #expect(line?.contains(word) == true, "the line for \(device) shows \(word): \(line ?? "")")
                }
            }

            // A site-wide start from the CLI, waiting for the results.
            let southMark = probe.mark()
            let cliStart = try await rig.console.runClient(
                ["start", "--site", Fleet.south, "--program", "sole-vitality", "--wait"], token: rig.tokens.operator)
            #expect(cliStart.succeeded, "\(cliStart)")
            for device in [s1, s2] {
                let line = cliStart.standardOutput.split(separator: "\n").first { $0.contains(device.device) }
                #expect(line?.contains("succeeded") == true, "\(device) succeeded in\n\(cliStart.standardOutput)")
                try await probe.waitForEvent(type: "session_started", on: device, after: southMark)
            }
            #expect(!cliStart.standardOutput.contains("north-"), "only spa-south was targeted:\n\(cliStart.standardOutput)")

            // A refused request: non-zero exit with the server's message.
            let refusedBody: WireJSON = [
                "action": "start_session", "params": ["program": "sole-vitality"], "targets": ["site": .string(Fleet.south)],
            ]
            let refusedByAPI = try await rig.api.post("/api/v1/commands", json: refusedBody, token: rig.tokens.viewer)
            #expect(refusedByAPI.status == 403 && refusedByAPI.hasErrorShape, "\(refusedByAPI)")
            let refusedByCLI = try await rig.console.runClient(
                ["start", "--site", Fleet.south, "--program", "sole-vitality"], token: rig.tokens.viewer)
            #expect(!refusedByCLI.succeeded, "\(refusedByCLI)")
            let serverMessage = try #require(refusedByAPI.errorMessage)
            #expect((refusedByCLI.standardError + refusedByCLI.standardOutput).contains(serverMessage),
                    "the CLI prints the server's message \"\(serverMessage)\": \(refusedByCLI)")
            let nowhere = try await rig.console.runClient(
                ["start", "--site", "nowhere", "--program", "sole-vitality"], token: rig.tokens.operator)
            #expect(!nowhere.succeeded, "\(nowhere)")
            #expect((nowhere.standardError + nowhere.standardOutput).contains("nowhere"), "\(nowhere)")

            // Every operator action is in the audit log: who, what, which targets.
            let audit = try #require(try await rig.getJSON("/api/v1/audit?limit=100")["entries"]?.array)
            let starts = audit.filter { $0["actor"]?.string == "operator" && ($0["action"]?.string ?? "").contains("start_session") }
            #expect(starts.contains { ($0["targets"]?.string ?? "").contains(Fleet.north) }, "the site-wide start: \(audit)")
            #expect(starts.contains { ($0["targets"]?.string ?? "").contains(Fleet.south) }, "the CLI's start: \(audit)")
            for entry in starts {
                #expect(entry["at"]?.string.flatMap(FleetProbe.date(from:)) != nil && entry["outcome"]?.string?.isEmpty == false,
                        "when and outcome: \(entry)")
            }
            await mute.close()
        }
    }

    @Test("the console restarted mid-command keeps its records: final results unchanged, a queued device served when it returns, a silent one timed out; after SIGTERM and after SIGKILL")
    func restartMidCommand() async throws {
        let n1 = Fleet.device(Fleet.north, "north-01")
        let n2 = Fleet.device(Fleet.north, "north-02")  // offline when the command is sent
        let s1 = Fleet.device(Fleet.south, "south-01")
        try await ConsoleRig.run(console: { $0.health.commandTimeoutSeconds = 4 }, agents: [n1, n2, s1]) { rig in
            let probe = rig.probe
            let stateTopic = "massage/v1/_console/state"
            let mute = try await CraftedDevice.connect(Fleet.device(Fleet.north, "north-mute"), broker: rig.broker)
            try await rig.waitForDevice(mute.device, "the silent device online") { $0["online"]?.bool == true }
            let returning = try rig.agent(n2)
            returning.kill()
            try await returning.waitForExit()
            try await rig.waitForDevice(n2, "north-02 offline") { $0["online"]?.bool == false }

            let submitted = try await rig.submit([
                "action": "start_session", "params": ["program": "sole-vitality"],
                "targets": ["devices": ["clinic-north/north-01", "north-02", "clinic-north/north-mute"], "site": .string(Fleet.north)],
                "ttl_s": 120,
            ])
            let id = try #require(submitted["id"]?.string)
            #expect(submitted.addresses == [n1, n2, mute.device], "\(submitted)")
            try await mute.waitForCommand(action: "start_session")
            let before = try await rig.waitForCommand(id, "north-01 succeeded, north-mute sent, north-02 queued") {
                $0.state(of: n1) == "succeeded" && $0.state(of: mute.device) == "sent" && $0.state(of: n2) == "queued"
            }

            // A graceful restart: offline on _console/state, then online again.
            let stopMark = probe.mark()
            #expect(try await rig.console.stop() == .exited(0), "SIGTERM: a clean exit\n\(rig.console.diagnostics())")
            try await probe.waitForMessage(on: nil, kind: nil, after: stopMark, "_console/state offline after SIGTERM") {
                $0.topic == stateTopic && $0["state"]?.string == "offline"
            }
            let restartMark = probe.mark()
            try await rig.console.restart()
            try await probe.waitForMessage(on: nil, kind: nil, after: restartMark, "_console/state online after the restart") {
                $0.topic == stateTopic && $0["state"]?.string == "online"
            }

            let after = try await rig.getJSON("/api/v1/commands/\(id)")
            for key in ["id", "action", "params", "created_by", "created_at", "expires_at"] {
                #expect(after[key] == before[key], "\(key) kept across the restart: \(before[key]?.text ?? "nil") → \(after[key]?.text ?? "nil")")
            }
            #expect(after.result(for: n1) == before.result(for: n1), "a final result is unchanged: \(after)")
            #expect(after.state(of: n2) == "queued", "still waiting for north-02: \(after)")

            // The silent device never answers: timed out, even across the restart.
            let timedOut = try await rig.waitForCommand(id, timeout: .seconds(30), "north-mute timed_out") {
                $0.state(of: mute.device) == "timed_out"
            }
            #expect(timedOut.result(for: n1) == before.result(for: n1), "\(timedOut)")

            // north-02 returns before expires_at: the console sends the queued command and records the answer.
            try await returning.restart(probe: probe)
            let served = try await rig.waitForCommand(id, timeout: .seconds(30), "north-02 succeeded after its return") {
                $0.state(of: n2) == "succeeded"
            }
            let session = try #require(served.result(for: n2)?["result"]?["session_id"]?.string, "\(served)")
            try await probe.waitForEvent(type: "session_started", sessionID: session, on: n2)
            let final = try await rig.waitUntilFinished(id)

            // A crash: the broker publishes the console's will; the records survive.
            let crashMark = probe.mark()
            rig.console.kill()
            #expect(try await rig.console.waitForExit() == .signalled(SIGKILL))
            try await probe.waitForMessage(on: nil, kind: nil, after: crashMark, "_console/state offline (the will) after SIGKILL") {
                $0.topic == stateTopic && $0["state"]?.string == "offline"
            }
            try await rig.console.restart()
            let afterCrash = try await rig.getJSON("/api/v1/commands/\(id)")
            #expect(afterCrash == final, "the finished record, unchanged by a crash:\n\(afterCrash)\nvs\n\(final)")

            // The audit log survived both restarts.
            let audit = try #require(try await rig.getJSON("/api/v1/audit?limit=100")["entries"]?.array)
            #expect(audit.contains { $0["actor"]?.string == "operator" && ($0["action"]?.string ?? "").contains("start_session") },
                    "\(audit)")
            await mute.close()
        }
    }
}
