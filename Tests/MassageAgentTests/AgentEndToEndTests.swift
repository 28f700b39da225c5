import FleetTestSupport
import Foundation
import Testing

// Sessions, commands and schedules. The rig, the program files and the
// usage arithmetic are in AgentEndToEndSupport.swift.
extension AgentEndToEndTests {
    @Test("a built-in program runs: ok reply with a session id, started/step/completed events, usage grows by exactly that session")
    func builtInProgramRunsToCompletion() async throws {
        try await AgentRig.run(agent: { $0.telemetryIntervalSeconds = 0.5 }) { rig in
            let program = try BuiltInProgram.load("sole-vitality")
            let before = UsageFigures(rig.probe.latestUsage(rig.device))

            let reply = try await rig.probe.send(action: "start_session", params: ["program": .string(program.id)], to: rig.device)
            try #require(reply.ok, "start_session was refused: \(reply)")
            let sessionID = try #require(reply.result?["session_id"]?.string, "no session_id in \(reply)")
            #expect(!sessionID.isEmpty)
            #expect(reply.result?["program"]?.string == program.id)
            if let duration = reply.result?["duration_s"] {
                #expect(duration.double == Double(program.totalSeconds), "duration_s of \(reply)")
            }

            let completed = try await rig.probe.waitForEvent(
                type: "session_completed", sessionID: sessionID, on: rig.device,
                timeout: .seconds(program.wallSeconds * 4 + 15))

            // The session's events, exactly: started, one step per program step, completed.
            let story = rig.probe.events(for: rig.device, sessionID: sessionID)
            #expect(story.map(\.type) == ["session_started"] + program.steps.map { _ in "session_step" } + ["session_completed"])
            #expect(story.allSatisfy { $0["program"]?.string == program.id }, "every session event names the program")
            #expect(story.allSatisfy { $0.epoch == rig.agent.epoch && !$0.isHistorical }, "live events of this epoch")
            let steps = story.filter { $0.type == "session_step" }
            for (index, (event, step)) in zip(steps, program.steps).enumerated() {
                #expect(event["step_index"]?.int == index, "\(event)")
                #expect(event["step_count"]?.int == program.steps.count, "\(event)")
                #expect(event["target"]?.string == step.target, "\(event)")
                #expect(event["zone"]?.string == BuiltInProgram.zone(of: step.target), "\(event)")
                #expect(event["technique"]?.string == step.technique, "\(event)")
                #expect(event["intensity"]?.int == step.intensity, "\(event)")
                #expect(event["duration_s"]?.int == step.durationSeconds, "\(event)")
            }

            // It really ran the program's length in simulated time.
            let started = try #require(story.first?.timestamp)
            let ended = try #require(completed.timestamp)
            #expect(ended.timeIntervalSince(started) >= program.wallSeconds * 0.9,
                    "\(program.totalSeconds) s at speed \(AgentRig.speed) cannot end in \(ended.timeIntervalSince(started)) s")
            if let elapsed = completed["elapsed_s"]?.double {
                #expect(abs(elapsed - Double(program.totalSeconds)) <= 2, "elapsed_s of \(completed)")
            }

            // Usage after the session: exactly this session, nothing else.
            let usage = try await rig.probe.waitForUsage(rig.device, "usage counting the completed session") {
                UsageFigures($0).completed == before.completed + 1
            }
            let delta = UsageFigures(usage) - before
            #expect(delta == program.completedUsage, "usage grew by \(delta); expected \(program.completedUsage)")

            // Telemetry showed the session while it ran.
            let running = rig.probe.telemetry(for: rig.device).filter {
                $0["session_state"]?.string == "running" && $0.sessionID == sessionID
            }
            #expect(!running.isEmpty, "no telemetry with session_state running for \(sessionID)")
            rig.expectWellFormedWire()
        }
    }

    @Test("bad commands get bad_request, unknown_action, invalid_params, busy and expired; a repeated id gets the first reply and runs once; the agent still answers ping")
    func commandErrorsAndIdempotence() async throws {
        try await AgentRig.run { rig in
            let probe = rig.probe
            let device = rig.device

            // Not JSON, and binary garbage: bad_request, with the id null (it could not be read).
            for payload: [UInt8] in [Array("start the massage, please".utf8), [0xFF, 0xFE, 0x00, 0x80, 0x7B]] {
                let reply = try await probe.sendRaw(payload, to: device)
                #expect(!reply.ok)
                #expect(reply.errorCode == "bad_request", "\(reply)")
                #expect(reply.json["id"] == .null, "an unreadable command is answered with \"id\": null: \(reply)")
                #expect(!(reply.errorMessage ?? "").isEmpty, "\(reply)")
            }

            let dance = try await probe.send(action: "dance", to: device, id: "e2e-dance")
            #expect(dance.id == "e2e-dance")
            #expect(dance.errorCode == "unknown_action", "\(dance)")
            #expect(dance.errorMessage?.contains("dance") == true && dance.errorMessage?.contains("start_session") == true,
                    "the message names the action and the known ones: \(dance)")

            // Unknown program: invalid_params naming every known program.
            let typo = try await probe.send(
                action: "start_session", params: ["program": "calf-relase"], to: device, id: "e2e-typo")
            #expect(typo.id == "e2e-typo")
            #expect(typo.errorCode == "invalid_params", "\(typo)")
            let typoMessage = typo.errorMessage ?? ""
            #expect(typoMessage.contains("calf-relase"), "\(typo)")
            for known in try BuiltInProgram.builtInIDs() {
                #expect(typoMessage.contains(known), "the message lists the known program \(known): \(typo)")
            }

            // A custom step the leg cannot take: tapping on the Achilles tendon.
            let tapping = try await probe.send(
                action: "start_session",
                params: ["steps": [["target": "achilles", "technique": "tapping", "intensity": 2, "duration_s": 60]]],
                to: device, id: "e2e-tapping")
            #expect(tapping.errorCode == "invalid_params", "\(tapping)")
            let tappingMessage = (tapping.errorMessage ?? "").lowercased()
            #expect(tappingMessage.contains("tapping") && tappingMessage.contains("achilles") && tappingMessage.contains("tendon"),
                    "the message gives the reason (tapping jolts the tendon): \(tapping)")

            // Expired: refused, and nothing runs.
            let expired = try await probe.send(
                action: "start_session", params: ["program": "sole-vitality"], to: device, id: "e2e-expired",
                expiresAt: Date().addingTimeInterval(-60))
            #expect(expired.errorCode == "expired", "\(expired)")
            #expect(try await rig.status()["session_state"]?.string == "idle", "an expired start_session ran")

            // A start must say when it expires, and not wait hours for the device.
            let forever = try await probe.sendCommand(
                ["id": "e2e-no-expiry", "action": "start_session", "params": ["program": "sole-vitality"]], to: device)
            #expect(forever.errorCode == "bad_request" && forever.errorMessage?.contains("expires_at") == true, "\(forever)")
            let tooLong = try await probe.send(
                action: "start_session", params: ["program": "sole-vitality"], to: device, id: "e2e-week",
                expiresAt: Date().addingTimeInterval(7 * 86_400))
            #expect(tooLong.errorCode == "invalid_params" && tooLong.errorMessage?.contains("at most 600 s") == true, "\(tooLong)")
            #expect(try await rig.status()["session_state"]?.string == "idle", "a start without a short expiry ran")

            // One session starts; a second start is busy; the first id again gets the first reply.
            let first = try await probe.send(
                action: "start_session", params: ["program": "sole-vitality"], to: device, id: "e2e-start")
            try #require(first.ok, "\(first)")
            let sessionID = try #require(first.result?["session_id"]?.string)
            try await probe.waitForEvent(type: "session_started", sessionID: sessionID, on: device)

            let busy = try await probe.send(
                action: "start_session", params: ["program": "knee-leg-relief"], to: device, id: "e2e-busy")
            #expect(busy.errorCode == "busy", "\(busy)")
            #expect(busy.errorMessage?.contains(sessionID) == true, "busy names the running session: \(busy)")

            let repeatedWhileRunning = try await probe.send(
                action: "start_session", params: ["program": "sole-vitality"], to: device, id: "e2e-start")
            #expect(repeatedWhileRunning.json == first.json, "a repeated id gets the first reply: \(repeatedWhileRunning) vs \(first)")

            let stop = try await probe.send(action: "stop_session", to: device, id: "e2e-stop")
            #expect(stop.ok, "\(stop)")
            #expect(stop.result?["session_id"]?.string == sessionID, "\(stop)")
            try await probe.waitForEvent(type: "session_aborted", sessionID: sessionID, on: device, timeout: .seconds(15)) {
                $0["reason"]?.string == "remote_stop"
            }

            // Now idle: the same ids still get their first replies and start nothing.
            let repeatedWhenIdle = try await probe.send(
                action: "start_session", params: ["program": "sole-vitality"], to: device, id: "e2e-start")
            #expect(repeatedWhenIdle.json == first.json, "\(repeatedWhenIdle) vs \(first)")
            let busyAgain = try await probe.send(
                action: "start_session", params: ["program": "knee-leg-relief"], to: device, id: "e2e-busy")
            #expect(busyAgain.json == busy.json, "the refused command's id gets its refusal again: \(busyAgain) vs \(busy)")
            let expiredAgain = try await probe.send(
                action: "start_session", params: ["program": "sole-vitality"], to: device, id: "e2e-expired")
            #expect(expiredAgain.json == expired.json, "\(expiredAgain) vs \(expired)")
            #expect(try await rig.status()["session_state"]?.string == "idle", "a repeated command id started a session")

            // Exactly one session ran, and usage says so.
            let starts = FleetProbe.distinct(probe.events(for: device)).filter { $0.type == "session_started" }
            #expect(starts.map(\.sessionID) == [sessionID], "sessions started: \(starts)")
            let usage = try await probe.waitForUsage(device, "usage counting the stopped session") {
                $0.abortedCount("remote_stop") == 1
            }
            let figures = UsageFigures(usage)
            #expect(figures.started == 1 && figures.completed == 0 && figures.aborted == ["remote_stop": 1], "\(figures)")

            // A client without MQTT 5 gets its reply on reply_to.
            let replyTo = "clients/front-desk/\(probe.instance)"
            let plain = try await probe.sendCommand(
                ["id": "e2e-reply-to", "action": "ping", "reply_to": .string(replyTo)], to: device, responseTopic: false)
            #expect(plain.ok && plain.message.topic == replyTo, "\(plain)")

            // After all of that, the agent still answers.
            let ping = try await probe.send(action: "ping", to: device)
            #expect(ping.ok, "\(ping)")
            #expect(ping.result?["epoch"]?.int == rig.agent.epoch, "\(ping)")
            #expect(rig.agent.isRunning)
            rig.expectWellFormedWire()
        }
    }

    @Test("schedule_session: session_scheduled, then the session starts at its time; cancel_scheduled cancels another; an overlapping schedule is busy")
    func schedules() async throws {
        try await AgentRig.run { rig in
            let probe = rig.probe
            let device = rig.device
            let now = Date()
            // Wall-clock times (schedules are not scaled by --speed). The one
            // to cancel is a 2 s custom session at +3 s; the one to run is
            // sole-vitality at +6 s (its slot, 570 s of wall time, follows).
            let cancelAt = now.addingTimeInterval(3)
            let runAt = now.addingTimeInterval(6)

            let early = try await probe.send(
                action: "schedule_session",
                params: [
                    "steps": [["target": "calf", "technique": "kneading", "intensity": 4, "duration_s": 2]],
                    "at": .string(FleetProbe.timestamp(cancelAt)),
                ],
                to: device, id: "e2e-schedule-early")
            try #require(early.ok, "\(early)")
            let earlyScheduleID = try #require(early.result?["schedule_id"]?.string, "\(early)")
            let earlySessionID = early.result?["session_id"]?.string

            let main = try await probe.send(
                action: "schedule_session",
                params: ["program": "sole-vitality", "at": .string(FleetProbe.timestamp(runAt))],
                to: device, id: "e2e-schedule-main")
            try #require(main.ok, "\(main)")
            let scheduleID = try #require(main.result?["schedule_id"]?.string, "\(main)")
            let sessionID = try #require(main.result?["session_id"]?.string, "schedule_session's result carries the session id: \(main)")
            #expect(main.result?["program"]?.string == "sole-vitality", "\(main)")
            #expect(main.result?["at"]?.string.flatMap(FleetProbe.date(from:)).map { abs($0.timeIntervalSince(runAt)) < 0.002 } == true,
                    "the result's at is the requested time: \(main)")
            #expect(earlyScheduleID != scheduleID)

            let scheduled = try await probe.waitForEvent(type: "session_scheduled", on: device) {
                $0["schedule_id"]?.string == scheduleID
            }
            #expect(scheduled["program"]?.string == "sole-vitality", "\(scheduled)")
            #expect(scheduled["at"]?.string.flatMap(FleetProbe.date(from:)).map { abs($0.timeIntervalSince(runAt)) < 0.002 } == true,
                    "\(scheduled)")
            let earlyScheduled = try await probe.waitForEvent(type: "session_scheduled", on: device) {
                $0["schedule_id"]?.string == earlyScheduleID
            }
            #expect(earlyScheduled["program"]?.string == "_custom", "custom steps are program _custom: \(earlyScheduled)")

            // A schedule inside the main one's slot is busy.
            let overlap = try await probe.send(
                action: "schedule_session",
                params: ["program": "knee-leg-relief", "at": .string(FleetProbe.timestamp(runAt.addingTimeInterval(60)))],
                to: device, id: "e2e-schedule-overlap")
            #expect(overlap.errorCode == "busy", "\(overlap)")

            // Cancel the early one, before its time.
            let cancel = try await probe.send(
                action: "cancel_scheduled", params: ["schedule_id": .string(earlyScheduleID)], to: device, id: "e2e-cancel")
            #expect(cancel.ok, "\(cancel)")
            #expect(cancel.result?["schedule_id"]?.string == earlyScheduleID, "\(cancel)")
            try #require(cancel.message.arrival < cancelAt, "the cancel came back after the early schedule's time; the machine is too slow for this test")
            let pending = try await rig.status()["scheduled"]?.array ?? []
            #expect(pending.compactMap { $0["schedule_id"]?.string } == [scheduleID], "scheduled after the cancel: \(pending)")
            let cancelAgain = try await probe.send(
                action: "cancel_scheduled", params: ["schedule_id": .string(earlyScheduleID)], to: device)
            #expect(cancelAgain.errorCode == "not_found", "\(cancelAgain)")

            // The main one starts at its time, not before.
            let started = try await probe.waitForEvent(
                type: "session_started", sessionID: sessionID, on: device, timeout: .seconds(30))
            #expect(started["schedule_id"]?.string == scheduleID, "\(started)")
            #expect(started["program"]?.string == "sole-vitality", "\(started)")
            let startedAt = try #require(started.timestamp)
            #expect(startedAt >= runAt.addingTimeInterval(-0.001), "started at \(startedAt), scheduled for \(runAt)")
            #expect(startedAt < runAt.addingTimeInterval(1.5), "started at \(startedAt), scheduled for \(runAt)")
            #expect(started.arrival >= runAt)

            // The cancelled one never ran and was not reported missed: the only session so far is the main one.
            let sessionEvents = FleetProbe.distinct(probe.events(for: device)).filter { $0.type != "session_scheduled" }
            #expect(sessionEvents.filter { $0.type == "session_started" }.map(\.sessionID) == [sessionID], "\(sessionEvents)")
            #expect(!sessionEvents.contains { $0["schedule_id"]?.string == earlyScheduleID }, "\(sessionEvents)")
            if let earlySessionID {
                #expect(!sessionEvents.contains { $0.sessionID == earlySessionID }, "\(sessionEvents)")
            }
            let status = try await rig.status()
            #expect(status["scheduled"]?.array?.isEmpty ?? true, "\(status)")
            #expect(status["session_id"]?.string == sessionID, "\(status)")

            let stop = try await probe.send(action: "stop_session", params: ["session_id": .string(sessionID)], to: device)
            #expect(stop.ok, "\(stop)")
            try await probe.waitForEvent(type: "session_aborted", sessionID: sessionID, on: device, timeout: .seconds(15))
            rig.expectWellFormedWire()
        }
    }
}
