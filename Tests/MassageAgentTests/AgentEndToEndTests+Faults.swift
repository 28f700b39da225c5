import FleetTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Faults: the broker goes away, the agent is killed, the agent is asked to stop.
extension AgentEndToEndTests {
    @Test("broker stopped mid-session and restarted later: the session completes on the device; every event arrives exactly once, in order, historical where it waited")
    func brokerOutageMidSession() async throws {
        // The broker keeps the probe's session (persistence + a persistent
        // probe session), so the probe misses nothing the agent replays,
        // whichever of the two reconnects first.
        try await AgentRig.run(broker: BrokerOptions(persistence: true), persistentProbe: true) { rig in
            let probe = rig.probe
            let device = rig.device
            let epoch = try #require(rig.agent.epoch)
            let program = try BuiltInProgram.load("sole-vitality")
            let sessionID = try await rig.startSession(program.id)
            let started = try await probe.waitForEvent(type: "session_started", sessionID: sessionID, on: device)
            try await probe.waitForEvent(type: "session_step", sessionID: sessionID, on: device) { $0["step_index"]?.int == 1 }
            let startedAt = try #require(started.timestamp)

            let stopRequested = Date()
            try await rig.broker.stop()
            let brokerDown = Date()  // the broker process is gone: nothing after this can be delivered live
            // The device carries on alone. Keep the broker down until the
            // session's end on the device (its start plus its length at this
            // speed, with half again as margin for a loaded machine) is past;
            // that it did end during the outage is asserted below from the
            // events' own timestamps and flags.
            let endOnDevice = startedAt.addingTimeInterval(program.wallSeconds * 1.5 + 1)
            try await waitUntil(timeout: .seconds(program.wallSeconds * 2 + 30), "the session's end on the device is past") {
                Date() > endOnDevice
            }
            #expect(rig.agent.isRunning, "the agent survives the outage")
            let restartRequested = Date()
            let afterRestart = probe.mark()
            try await rig.broker.restart()

            let completed = try await probe.waitForEvent(
                type: "session_completed", sessionID: sessionID, on: device, timeout: .seconds(30))
            try await probe.waitForStatus(device, state: "online", epoch: epoch, after: afterRestart, timeout: .seconds(30))

            let completedAt = try #require(completed.timestamp)
            #expect(completedAt > stopRequested && completedAt < restartRequested,
                    "the session completed on the device while the broker was down (\(stopRequested)…\(restartRequested)): \(completed)")
            #expect(completed.isHistorical, "session_completed waited in the outbox: \(completed)")

            // Every event, as the console sees them.
            let events = probe.events(for: device)
            let problems = FleetProbe.sequenceProblems(events)
            #expect(problems.isEmpty, "contiguous (epoch, seq), in order:\n\(problems.joined(separator: "\n"))")
            // Exactly once: only a message in flight when the broker stopped
            // may come again (QoS 1); nothing produced during the outage does.
            for (stamp, copies) in FleetProbe.duplicates(events) {
                #expect(copies[0].arrival < brokerDown,
                        "\(stamp) arrived \(copies.count) times: \(copies.map(\.description).joined(separator: " / "))")
            }
            for event in events {
                if event.arrival < stopRequested {
                    #expect(!event.isHistorical, "delivered live, yet marked historical: \(event)")
                }
                if let ts = event.timestamp, ts > brokerDown, ts < restartRequested {
                    #expect(event.isHistorical, "produced during the outage, so it waited in the outbox: \(event)")
                }
            }
            let story = FleetProbe.distinct(events).filter { $0.sessionID == sessionID }
            #expect(story.map(\.type) == ["session_started"] + program.steps.map { _ in "session_step" } + ["session_completed"],
                    "\(story)")
            #expect(story.compactMap { $0["step_index"]?.int } == Array(program.steps.indices), "\(story)")
            #expect(story.allSatisfy { $0.epoch == epoch }, "no restart, one epoch: \(story)")

            // Usage counts the session exactly once, in full.
            let usage = try await probe.waitForUsage(device, "usage counting the completed session") {
                UsageFigures($0).completed == 1
            }
            #expect(UsageFigures(usage) == program.completedUsage, "\(UsageFigures(usage))")
            let latest = try #require(probe.latestUsage(device))
            #expect(UsageFigures(latest) == program.completedUsage, "the latest usage by (epoch, seq): \(latest)")
            #expect(probe.retainedStatus(device)?["state"]?.string == "online")
            rig.expectWellFormedWire()
        }
    }

    @Test("SIGKILL: the retained status becomes offline (the will); after a restart the interrupted session is reported and counted once")
    func killedAgentReportsInterruptedSession() async throws {
        try await AgentRig.run { rig in
            let probe = rig.probe
            let device = rig.device
            let firstEpoch = try #require(rig.agent.epoch)
            let program = try BuiltInProgram.load("sole-vitality")
            let sessionID = try await rig.startSession(program.id)
            try await probe.waitForEvent(type: "session_step", sessionID: sessionID, on: device) { $0["step_index"]?.int == 1 }

            let beforeKill = probe.mark()
            rig.agent.kill()
            #expect(try await rig.agent.waitForExit() == .signalled(SIGKILL))

            // The broker publishes the will: offline, same epoch, no reason.
            let will = try await probe.waitForStatus(device, state: "offline", epoch: firstEpoch, after: beforeKill)
            #expect(will["reason"] == nil, "the will carries no reason: \(will)")
            let retained = try await probe.fetchRetained("status", of: device)
            #expect(retained?["state"]?.string == "offline", "retained status after SIGKILL: \(String(describing: retained))")
            #expect(retained?.epoch == firstEpoch, "\(String(describing: retained))")

            // Restart on the same data directory: a new epoch, and the
            // interrupted session reported once.
            let online = try await rig.agent.restart(probe: probe)
            let secondEpoch = try #require(online.epoch)
            #expect(secondEpoch == firstEpoch + 1, "the epoch increments on every start: \(online)")
            let aborted = try await probe.waitForEvent(
                type: "session_aborted", sessionID: sessionID, on: device, after: beforeKill)
            #expect(aborted["reason"]?.string == "interrupted", "\(aborted)")
            #expect(aborted["program"]?.string == program.id, "\(aborted)")
            #expect(aborted.epoch == secondEpoch, "reported by the new run: \(aborted)")

            let usage = try await probe.waitForUsage(device, "usage counting the interrupted session") {
                $0.epoch == secondEpoch && $0.abortedCount("interrupted") == 1
            }
            var figures = UsageFigures(usage)
            #expect(figures.started == 1 && figures.completed == 0 && figures.aborted == ["interrupted": 1], "\(figures)")
            let seconds = figures.byProgram[program.id] ?? 0
            #expect(seconds >= 0 && seconds < Double(program.totalSeconds), "time of the interrupted session: \(figures)")

            // Counted once: another (clean) restart changes nothing.
            #expect(try await rig.agent.stop() == .exited(0))
            let third = try await rig.agent.restart(probe: probe)
            let thirdEpoch = try #require(third.epoch)
            #expect(thirdEpoch == secondEpoch + 1, "\(third)")
            let afterThird = probe.mark()
            let resync = try await probe.send(action: "resync", to: device)
            #expect(resync.ok, "\(resync)")
            let republished = try await probe.waitForUsage(device, after: afterThird, "usage republished by resync") {
                $0.epoch == thirdEpoch
            }
            figures = UsageFigures(republished)
            #expect(figures.started == 1 && figures.completed == 0 && figures.aborted == ["interrupted": 1], "\(figures)")
            let interruptions = FleetProbe.distinct(probe.events(for: device)).filter {
                $0.type == "session_aborted" && $0["reason"]?.string == "interrupted"
            }
            #expect(interruptions.count == 1, "reported once: \(interruptions)")
            rig.expectWellFormedWire()
        }
    }

    @Test("schedule_session is answered only once the booking is stored: SIGKILL right after the reply loses nothing")
    func scheduleStoredBeforeReply() async throws {
        try await AgentRig.run { rig in
            let probe = rig.probe
            let device = rig.device
            var booked: [String] = []
            // Five bookings, each followed at once by a kill: the reply must
            // never run ahead of storage (the persistence loop writes only
            // every 100 ms, so a reply sent before the write would lose it).
            for round in 0..<5 {
                let at = Date().addingTimeInterval(TimeInterval(3600 * (round + 1)))
                let reply = try await probe.send(action: "schedule_session",
                                                 params: ["program": "sole-vitality", "at": .string(FleetProbe.timestamp(at))], to: device)
                try #require(reply.ok, "\(reply)")
                booked.append(try #require(reply.result?["schedule_id"]?.string))
                rig.agent.kill()
                #expect(try await rig.agent.waitForExit() == .signalled(SIGKILL))
                _ = try await rig.agent.restart(probe: probe)
                let scheduled = try await rig.status()["scheduled"]?.array?.compactMap { $0["schedule_id"]?.string } ?? []
                #expect(scheduled == booked, "after the kill of round \(round), the device still has every acknowledged booking")
            }
        }
    }

    @Test("SIGHUP during a session (logrotate, a systemctl reload) is logged and ignored: the agent and the session go on")
    func hangupDuringSession() async throws {
        try await AgentRig.run { rig in
            let probe = rig.probe
            let device = rig.device
            let program = try BuiltInProgram.load("sole-vitality")
            let sessionID = try await rig.startSession(program.id)
            try await probe.waitForEvent(type: "session_step", sessionID: sessionID, on: device) { $0["step_index"]?.int == 1 }
            rig.agent.send(SIGHUP)
            try await waitUntil(timeout: .seconds(10), "the agent logged the hangup") { rig.agent.standardError().contains("SIGHUP ignored") }
            // The session carries on to its next step, from the same process.
            try await probe.waitForEvent(type: "session_step", sessionID: sessionID, on: device, timeout: .seconds(60)) { $0["step_index"]?.int == 2 }
            #expect(rig.agent.isRunning, "still running after SIGHUP: \(rig.agent.diagnostics())")
            #expect(probe.events(for: device).allSatisfy { $0.type != "session_aborted" }, "nothing was aborted")
        }
    }

    @Test("SIGTERM during a session: the massager is released, the session reported aborted shutdown, the status offline with reason shutdown, exit 0")
    func gracefulShutdownDuringSession() async throws {
        try await AgentRig.run { rig in
            let probe = rig.probe
            let device = rig.device
            let epoch = try #require(rig.agent.epoch)
            let program = try BuiltInProgram.load("sole-vitality")
            let sessionID = try await rig.startSession(program.id)
            try await probe.waitForEvent(type: "session_step", sessionID: sessionID, on: device) { $0["step_index"]?.int == 1 }

            let beforeTerm = probe.mark()
            rig.agent.terminate()
            let exit = try await rig.agent.waitForExit(timeout: .seconds(20))
            #expect(exit == .exited(0), "exit after SIGTERM: \(exit)")

            // All of this was sent before the agent exited; the waits only
            // give the broker time to pass it on.
            let aborted = try await probe.waitForEvent(
                type: "session_aborted", sessionID: sessionID, on: device, after: beforeTerm, timeout: .seconds(5))
            #expect(aborted["reason"]?.string == "shutdown", "\(aborted)")
            #expect(aborted["program"]?.string == program.id, "\(aborted)")
            let offline = try await probe.waitForStatus(device, state: "offline", epoch: epoch, after: beforeTerm, timeout: .seconds(5))
            #expect(offline["reason"]?.string == "shutdown", "\(offline)")
            #expect(aborted.index < offline.index, "the session is reported before the goodbye")
            let usage = try await probe.waitForUsage(device, timeout: .seconds(5), "usage counting the shut-down session") {
                $0.abortedCount("shutdown") == 1
            }
            let figures = UsageFigures(usage)
            #expect(figures.started == 1 && figures.completed == 0 && figures.aborted == ["shutdown": 1], "\(figures)")

            // Released: whatever telemetry followed the abort shows no pressure and no running session.
            for telemetry in probe.telemetry(for: device, after: aborted.index) {
                #expect(telemetry["session_state"]?.string != "running", "\(telemetry)")
                #expect(telemetry["pressure_mmhg"]?.object?.values.allSatisfy { ($0.double ?? 0) == 0 } ?? true, "\(telemetry)")
            }

            // What the broker keeps is the clean goodbye, not the will.
            let retained = try await probe.fetchRetained("status", of: device)
            #expect(retained?["state"]?.string == "offline" && retained?["reason"]?.string == "shutdown",
                    "\(String(describing: retained))")
            #expect(!rig.agent.standardError().isEmpty, "the agent logs to stderr")
            rig.expectWellFormedWire()
        }
    }
}
