import FleetTestSupport
import Foundation
import Testing

// Rollouts (issue 6) that must not hurt a clinic: a config the devices roll
// back, devices in a session, a device that is offline.
extension ConsoleEndToEndTests {
    @Test("rollout: a config that fails the devices' self-check stops at the canary once the error threshold is crossed — aborted, no device beyond the canary written — and the canary gets its previous desired config back under a higher version, applies it, and shows rolled_back")
    func rolloutRolledBackConfigAbortsAtCanary() async throws {
        let fleet = RolloutFleet.twenty
        let previous: WireJSON = ["max_session_minutes": 20, "default_intensity": 3]
        let previousVersion = 7
        try await ConsoleRig.run(agents: fleet) { rig in
            let probe = rig.probe

            // What every device runs before the rollout: desired version 7.
            let baseline = probe.mark()
            for device in fleet {
                try await probe.publishDesired(version: previousVersion, config: previous, to: device)
            }
            for device in fleet {
                try await probe.waitForReported(device, version: previousVersion, state: "applied", after: baseline, timeout: .seconds(20))
                try await rig.waitForDevice(device, "the console sees \(device) at desired and reported version \(previousVersion)") {
                    $0["config"]?["desired"]?.int == previousVersion && $0["config"]?["reported"]?.int == previousVersion
                }
            }

            let mark = probe.mark()
            let created = try await rig.createRollout([
                "name": "calf ceiling 15 mmHg",
                "config": RolloutFleet.calfCeilingTooLow,
                "targets": RolloutFleet.bothSites,
                "waves": ["canary": 1, "percentages": [50, 100]],
                "bake_s": 0,
                "apply_timeout_s": 20,
                "error_threshold": ["percent": 50, "min_executed": 1, "action": "abort"],
            ])
            let id = created.id
            #expect(created.waveSizes == [1, 9, 10], "\(created)")

            let history = RolloutHistory()
            let aborted = try await rig.waitForRollout(id, timeout: .seconds(60), history: history, "aborted by the error threshold") {
                $0.state == "aborted"
            }
            #expect(aborted.reason?.isEmpty == false, "an aborted rollout says why: \(aborted)")
            let canaries = aborted.members(ofWave: 0)
            try #require(canaries.count == 1, "\(aborted)")
            let canary = canaries[0]
            let others = fleet.filter { $0 != canary }

            // Stopped at the canary: no later wave started, no other device written.
            for wave in 1..<max(1, aborted.waves.count) {
                #expect(aborted.waveState(wave) == "pending", "wave \(wave) never started: \(aborted)")
            }
            for device in others {
                #expect(aborted.state(of: device) == "pending", "\(device): \(aborted)")
                #expect(probe.desiredWrites(for: device, after: mark).isEmpty,
                        "\(device) (not the canary) was written: \(probe.desiredWrites(for: device, after: mark))")
            }
            let touched = history.all.flatMap { snapshot in others.filter { snapshot.state(of: $0) != "pending" }.map { "\($0): \(snapshot.state(of: $0))" } }
            #expect(touched.isEmpty, "devices beyond the canary left pending while the rollout ran: \(Set(touched))")

            // The canary: the bad config, rolled back by the device ...
            let writes = probe.desiredWrites(for: canary, after: mark)
            let bad = try #require(writes.first, "the canary \(canary) was never written")
            let badVersion = try #require(bad["version"]?.int, "\(bad)")
            #expect(badVersion > previousVersion, "a new, higher version than \(previousVersion): \(bad)")
            #expect(bad["config"]?.sameConfig(as: RolloutFleet.calfCeilingTooLow) == true, "\(bad)")
            let rolledBack = try await probe.waitForReported(canary, version: badVersion, state: "rolled_back", after: mark)

            // ... then its previous desired config back, under a higher version, applied.
            let restore = try await probe.waitForMessage(
                on: canary, kind: "config/desired", after: bad.index + 1, timeout: .seconds(20),
                "the previous config written back to \(canary) under a version above \(badVersion)"
            ) { ($0["version"]?.int ?? 0) > badVersion }
            #expect(restore.index > rolledBack.index, "restored after the device's report: \(restore)")
            #expect(restore["config"]?.sameConfig(as: previous) == true, "the previous config \(previous): \(restore)")
            let restoredVersion = try #require(restore["version"]?.int)
            try await probe.waitForReported(canary, version: restoredVersion, state: "applied", after: mark, timeout: .seconds(20))
            try await probe.waitForMessage(on: canary, kind: "status", after: mark, timeout: .seconds(10),
                                           "\(canary) status with config_version \(restoredVersion)") {
                $0["state"]?.string == "online" && $0["config_version"]?.int == restoredVersion
            }
            let settled = try await rig.waitForRollout(id, timeout: .seconds(20), "the canary shown rolled_back") {
                $0.state(of: canary) == "rolled_back"
            }
            #expect(settled.state == "aborted", "\(settled)")
            let retained = try await probe.fetchRetained("config/desired", of: canary)
            #expect(retained?["version"]?.int == restoredVersion && retained?["config"]?.sameConfig(as: previous) == true,
                    "the broker retains the previous config for \(canary): \(retained.map(\.description) ?? "nothing")")

            // The others still run version 7, untouched.
            for device in others {
                let reported = probe.reportedConfig(device)
                #expect(reported?["version"]?.int == previousVersion && reported?["state"]?.string == "applied",
                        "\(device): \(reported.map(\.description) ?? "no reported config")")
            }

            // The abort is in the audit log.
            let audit = try await rig.auditEntries(mentioning: id)
            #expect(audit.contains { $0.text.lowercased().contains("abort") }, "\(audit)")
        }
    }

    @Test("rollout: devices in a session when their wave comes report pending and show deferred, apply only after their session completed, and no session is interrupted; the rollout then completes with every device succeeded")
    func rolloutDefersToRunningSessions() async throws {
        let fleet = RolloutFleet.devices(perSite: 4)
        let config = RolloutFleet.shorterSessions
        try await ConsoleRig.run(agents: fleet) { rig in
            let probe = rig.probe
            let mark = probe.mark()
            let created = try await rig.createRollout([
                "name": "while sessions run",
                "config": config,
                "targets": RolloutFleet.bothSites,
                "waves": ["canary": 1, "percentages": [100]],
                "bake_s": 1,
                "apply_timeout_s": 60,
                "error_threshold": ["percent": 50, "min_executed": 2, "action": "abort"],
            ])
            let id = created.id
            #expect(created.waveSizes == [1, 7], "\(created)")

            // Hold the rollout after its canary, start sessions on devices of
            // the second wave, then let it go on: their wave comes mid-session.
            let paused = try await rig.controlRollout(id, "pause")
            try #require(paused.status == 200, "\(paused)")
            let heldAt = RolloutSnapshot(try #require(paused.json))
            #expect(heldAt.state == "paused", "\(heldAt)")
            let secondWave = heldAt.members(ofWave: 1)
            try #require(secondWave.allSatisfy { heldAt.state(of: $0) == "pending" },
                         "the pause came after the second wave started; cannot test deferral: \(heldAt)")
            let north = secondWave.filter { $0.site == Fleet.north }
            let south = secondWave.filter { $0.site == Fleet.south }
            let busy = Array(north.prefix(1) + south.prefix(2))
            try #require(busy.count == 3, "\(heldAt)")
            // A built-in program (690 simulated s, ~7 s here) and two long custom sessions (~10 s).
            let params: [WireJSON] = [["program": "calf-release"], Fleet.customSteps(seconds: 1000), Fleet.customSteps(seconds: 1000, target: "thigh")]
            var sessions: [FleetProbe.Device: String] = [:]
            var started: [FleetProbe.Device: FleetProbe.Message] = [:]
            for (device, params) in zip(busy, params) {
                let reply = try await probe.send(action: "start_session", params: params, to: device)
                try #require(reply.ok, "start_session on \(device): \(reply)")
                let session = try #require(reply.result?["session_id"]?.string, "\(reply)")
                sessions[device] = session
                started[device] = try await probe.waitForEvent(type: "session_started", sessionID: session, on: device, after: mark)
            }
            let resumed = try await rig.controlRollout(id, "resume")
            #expect(resumed.status == 200 && resumed.json?["state"]?.string == "running", "\(resumed)")

            // Shown deferred while the sessions run ...
            let history = RolloutHistory()
            try await rig.waitForRollout(id, timeout: .seconds(30), history: history, "\(busy) deferred") { _ in
                Set(busy).isSubset(of: history.everSeen(in: "deferred"))
            }
            // ... and the rollout completes once they ended.
            let done = try await rig.waitForRollout(id, timeout: .seconds(90), history: history, "completed") {
                $0.state == "completed"
            }
            #expect(done.counts == ["succeeded": fleet.count], "\(done)")
            let deferredIdle = history.everSeen(in: "deferred").subtracting(busy)
            #expect(deferredIdle.isEmpty, "devices without a session were shown deferred: \(deferredIdle)")

            for device in busy {
                let session = try #require(sessions[device])
                let version = try #require(done.version(of: device), "\(done)")
                let written = try #require(probe.desiredWrites(for: device, after: mark).first, "\(device) never written")
                let completed = try await probe.waitForEvent(type: "session_completed", sessionID: session, on: device, after: mark, timeout: .seconds(30))
                #expect(written.index > (started[device]?.index ?? Int.max) && written.index < completed.index,
                        "\(device) was written while its session ran: \(written)")
                let pending = probe.reported(device, version: version, state: "pending", after: mark)
                let applied = probe.reported(device, version: version, state: "applied", after: mark)
                #expect(pending.map { $0.index < completed.index } == true,
                        "\(device) reported version \(version) pending during its session: \(probe.recentActivity(device))")
                #expect(applied.map { $0.index > completed.index } == true,
                        "\(device) applied version \(version) only after its session completed (#\(completed.index)): \(applied.map(\.description) ?? "never")")
            }
            // No session was interrupted.
            let aborted = fleet.flatMap { probe.events(for: $0, after: mark) }.filter { $0.type == "session_aborted" }
            #expect(aborted.isEmpty, "sessions aborted during the rollout: \(aborted)")
        }
    }

    @Test("rollout: a device offline at its wave does not hold the rollout beyond the apply timeout — it completes with that device timed_out or offline — and when the device returns within the lifetime it is written and ends succeeded")
    func rolloutOfflineDeviceTimesOutThenIsRetried() async throws {
        let fleet = RolloutFleet.devices(perSite: 3)
        let absent = Fleet.device(Fleet.south, "south-03")
        let applyTimeout = 8.0
        let config = RolloutFleet.shorterSessions
        try await ConsoleRig.run(agents: fleet) { rig in
            let probe = rig.probe
            let agent = try rig.agent(absent)
            try await agent.stop()
            try await rig.waitForDevice(absent, "\(absent) offline in the console") { $0["online"]?.bool == false }

            let mark = probe.mark()
            let created = try await rig.createRollout([
                "name": "one device away",
                "config": config,
                "targets": RolloutFleet.bothSites,
                "waves": ["canary": 1, "percentages": [100]],
                "bake_s": 0,
                "apply_timeout_s": .double(applyTimeout),
                "lifetime_h": 1,
            ])
            let id = created.id

            // Not blocked beyond the timeout.
            let done = try await rig.waitForRollout(id, timeout: .seconds(Int(applyTimeout) + 25), "completed without \(absent)") {
                $0.state == "completed"
            }
            #expect(["timed_out", "offline"].contains(done.state(of: absent)), "\(absent): \(done)")
            for device in fleet where device != absent {
                #expect(done.state(of: device) == "succeeded", "\(device): \(done)")
            }
            #expect(!agent.isRunning, "the absent device stayed away until the rollout completed")

            // Back within the lifetime: retried, and it succeeds.
            let back = probe.mark()
            try await agent.restart(probe: probe)
            let retried = try await rig.waitForRollout(id, timeout: .seconds(40), "\(absent) succeeded after it came back") {
                $0.state(of: absent) == "succeeded"
            }
            #expect(retried.state == "completed", "\(retried)")
            #expect(retried.counts == ["succeeded": fleet.count], "\(retried)")
            let version = try #require(retried.version(of: absent), "\(retried)")
            try await probe.waitForReported(absent, version: version, state: "applied", after: back)
            let retained = try await probe.fetchRetained("config/desired", of: absent)
            #expect(retained?["version"]?.int == version && retained?["config"]?.sameConfig(as: config) == true,
                    "\(absent)'s desired config: \(retained.map(\.description) ?? "nothing")")
            #expect(probe.desiredWrites(for: absent, after: mark).allSatisfy { $0["version"]?.int == version },
                    "\(absent) was written with one version: \(probe.desiredWrites(for: absent, after: mark))")
        }
    }
}
