import FleetTestSupport
import Foundation
import Testing

// Rollouts (issue 6): waves in order, and a console restart in the middle.
extension ConsoleEndToEndTests {
    @Test("rollout: a good config goes to the canary first, then wave by wave, each wave only after the previous one's devices applied it and reported healthy and the bake time passed; all 20 devices at two sites end succeeded and report the new version applied; every transition is audited")
    func rolloutGoodConfigWaveByWave() async throws {
        let fleet = RolloutFleet.twenty
        let config = RolloutFleet.shorterSessions
        let bake = 1.0
        try await ConsoleRig.run(agents: fleet) { rig in
            let probe = rig.probe
            // The operator's path: a YAML file through the CLI.
            let file = try rig.writeFile("good-rollout.yaml", """
                # fleet-console rollout create good-rollout.yaml
                name: shorter sessions, gentler default
                config:
                  max_session_minutes: 18
                  default_intensity: 4
                targets:
                  sites: [clinic-north, spa-south]
                waves:
                  canary: 1
                  percentages: [25, 50, 100]   # cumulative shares of the 20 targets
                bake_s: 1
                apply_timeout_s: 30
                error_threshold: {percent: 20, min_executed: 1, action: abort}
                """)
            let mark = probe.mark()
            let create = try await rig.cli(["rollout", "create", file, "--json"])
            try #require(create.succeeded, "fleet-console rollout create: \(create)")
            let created = RolloutSnapshot(try WireJSON.parse(create.standardOutput))
            let id = created.id
            try #require(id != "?", "the created rollout has no id: \(create.standardOutput)")

            // What the console planned.
            #expect(created.json["name"]?.string == "shorter sessions, gentler default", "\(created)")
            #expect(created.json["created_by"]?.string == "admin", "created_by is the token's name: \(created)")
            #expect(["running"].contains(created.state), "\(created)")
            #expect(Set(created.addresses) == Set(fleet) && created.devices.count == fleet.count,
                    "every target listed once: \(created)")
            // Canary 1, then cumulative 25 %, 50 %, 100 % of 20 targets: 5, 10, 20 devices in all.
            #expect(created.waveSizes == [1, 4, 5, 10], "wave sizes: \(created)")
            for (index, size) in created.waveSizes.enumerated() {
                #expect(created.members(ofWave: index).count == size, "wave \(index) lists \(size) devices: \(created)")
            }
            #expect(created.devices.allSatisfy { RolloutDeviceStates.all.contains($0["state"]?.string ?? "") }, "\(created)")

            let history = RolloutHistory()
            let done = try await rig.waitForRollout(id, timeout: .seconds(120), history: history, "completed") {
                $0.state == "completed"
            }

            // The end: every device succeeded with a version, every wave done.
            #expect(done.counts == ["succeeded": fleet.count], "\(done)")
            for index in done.waves.indices {
                #expect(done.waveState(index) == "done", "wave \(index): \(done)")
            }
            // Waves in order in every snapshot the test saw: no device of a
            // wave left `pending` before every device of the earlier waves succeeded.
            let orderProblems = history.all.flatMap { $0.waveOrderProblems(settled: ["succeeded"]) }
            #expect(orderProblems.isEmpty, "wave order broken in \(history.all.count) snapshots: \(orderProblems.prefix(5))")

            // The wire: each device's desired is the new config under a new
            // version, it applied exactly that, and the broker retains it.
            var versions: [FleetProbe.Device: Int] = [:]
            for device in fleet {
                let version = try #require(done.version(of: device), "\(device) has no version: \(done)")
                versions[device] = version
                let written = probe.desiredWrites(for: device, after: mark)
                let last = try #require(written.last, "no config/desired written for \(device)")
                #expect(last["version"]?.int == version, "\(device): \(last)")
                #expect(last["config"]?.sameConfig(as: config) == true, "\(device) got the rollout's config: \(last)")
                #expect(probe.reported(device, version: version, state: "applied", after: mark) != nil,
                        "\(device) reported version \(version) applied: \(probe.recentActivity(device))")
                try await probe.waitForMessage(on: device, kind: "status", after: mark, timeout: .seconds(10),
                                               "\(device) status with config_version \(version)") {
                    $0["state"]?.string == "online" && $0["config_version"]?.int == version
                }
                let retained = try await probe.fetchRetained("config/desired", of: device)
                #expect(retained?.retained == true && retained?["version"]?.int == version
                            && retained?["config"]?.sameConfig(as: config) == true,
                        "the broker retains \(device)'s new desired config: \(retained.map(\.description) ?? "nothing")")
            }

            // Canary first, then each wave only after the previous wave's
            // devices applied and sent a status or telemetry after that, and
            // after the bake time.
            let sizes = done.waveSizes
            try #require(sizes.count == 4, "\(done)")
            for wave in 1..<sizes.count {
                let members = done.members(ofWave: wave)
                let firstWrites = members.compactMap { probe.desiredWrites(for: $0, after: mark).first }
                let firstWrite = try #require(firstWrites.min { $0.index < $1.index }, "no device of wave \(wave) was written")
                var lastApplied: FleetProbe.Message?
                for earlier in done.members(ofWave: wave - 1) {
                    let version = try #require(versions[earlier])
                    let applied = try #require(probe.reported(earlier, version: version, state: "applied", after: mark))
                    #expect(applied.index < firstWrite.index,
                            "\(earlier) (wave \(wave - 1)) applied (#\(applied.index)) before wave \(wave) was written (\(firstWrite))")
                    let healthy = probe.healthSignal(of: earlier, after: applied.index)
                    #expect(healthy.map { $0.index < firstWrite.index } == true,
                            "\(earlier) (wave \(wave - 1)) sent status or telemetry after applying (\(healthy.map(\.description) ?? "none")) before wave \(wave) was written (\(firstWrite))")
                    if lastApplied.map({ applied.index > $0.index }) ?? true { lastApplied = applied }
                }
                if let lastApplied {
                    let gap = firstWrite.arrival.timeIntervalSince(lastApplied.arrival)
                    #expect(gap >= bake - 0.3, "wave \(wave) was written \(gap) s after the last device of wave \(wave - 1) applied; bake_s is \(bake)")
                }
            }
            // The canary was alone: nothing else was written before wave 1.
            let canary = done.members(ofWave: 0)
            let firstOfWave1 = done.members(ofWave: 1).compactMap { probe.desiredWrites(for: $0, after: mark).first?.index }.min() ?? Int.max
            let early = fleet.filter { !canary.contains($0) && (probe.desiredWrites(for: $0, after: mark).first?.index ?? Int.max) < firstOfWave1 }
            #expect(early.isEmpty, "only the canary \(canary) was written before wave 1; also: \(early)")

            // Readable by a viewer, listed, and shown by the CLI.
            let list = try await rig.getJSON("/api/v1/rollouts", token: rig.tokens.viewer)
            #expect(list["rollouts"]?.array?.contains { $0["id"]?.string == id } == true, "\(list)")
            let viewed = RolloutSnapshot(try await rig.getJSON("/api/v1/rollouts/\(id)", token: rig.tokens.viewer))
            #expect(viewed.state == "completed", "\(viewed)")
            let status = try await rig.cli(["rollout", "status", id, "--json"], token: rig.tokens.viewer)
            #expect(status.succeeded, "\(status)")
            #expect((try? WireJSON.parse(status.standardOutput))?["state"]?.string == "completed", "\(status)")
            let table = try await rig.cli(["rollout", "list"], token: rig.tokens.viewer)
            #expect(table.succeeded && table.standardOutput.contains(id), "\(table)")

            // Every transition is in the audit log: the creation by admin,
            // the waves, the completion.
            let audit = try await rig.auditEntries(mentioning: id)
            #expect(audit.contains { $0["actor"]?.string == "admin" }, "the creation, by admin: \(audit)")
            #expect(audit.count >= sizes.count + 2, "at least one entry per wave, the creation and the completion: \(audit)")
            #expect(audit.contains { $0.text.lowercased().contains("complete") }, "the completion: \(audit)")
        }
    }

    @Test("rollout: the console killed (SIGKILL) in the middle of a rollout, while a wave bakes, and started again resumes it where it was — finished waves stay succeeded and are not written again, the bake still holds, the next wave runs once — and completes it")
    func rolloutResumesAfterConsoleRestart() async throws {
        let fleet = RolloutFleet.twenty
        let config: WireJSON = ["max_session_minutes": 18]
        let bake = 4.0
        try await ConsoleRig.run(agents: fleet) { rig in
            let probe = rig.probe
            let mark = probe.mark()
            let created = try await rig.createRollout([
                "name": "survives a console restart",
                "config": config,
                "targets": RolloutFleet.bothSites,
                "waves": ["canary": 1, "percentages": [50, 100]],
                "bake_s": .double(bake),
                "apply_timeout_s": 30,
                "error_threshold": ["percent": 20, "min_executed": 1, "action": "abort"],
            ])
            let id = created.id
            #expect(created.waveSizes == [1, 9, 10], "\(created)")

            // Kill it while wave 1 bakes: waves 0 and 1 done, wave 2 not started.
            let before = try await rig.waitForRollout(id, timeout: .seconds(90), "wave 1 finished and baking") {
                $0.waveState(1) == "baking"
            }
            rig.console.kill()
            try await rig.console.waitForExit()
            let finished = before.members(ofWave: 0) + before.members(ofWave: 1)
            let waiting = before.members(ofWave: 2)
            try #require(finished.count == 10 && waiting.count == 10, "\(before)")
            for device in finished {
                #expect(before.state(of: device) == "succeeded", "\(device) before the kill: \(before)")
            }
            for device in waiting {
                #expect(before.state(of: device) == "pending", "\(device) before the kill: \(before)")
                #expect(probe.desiredWrites(for: device, after: mark).isEmpty, "\(device) was written before wave 2 started")
            }

            let restartMark = probe.mark()
            try await rig.console.restart()

            // Where it was: the same rollout, the finished waves as they were.
            let after = try await rig.rollout(id)
            #expect(["running", "completed"].contains(after.state), "after the restart: \(after)")
            #expect(after.waveState(0) == "done", "\(after)")
            #expect(["baking", "done"].contains(after.waveState(1)), "\(after)")
            for device in finished {
                #expect(after.state(of: device) == "succeeded", "\(device) after the restart: \(after)")
                #expect(after.version(of: device) == before.version(of: device), "\(device) keeps its version: \(after)")
            }
            let list = try await rig.getJSON("/api/v1/rollouts")
            #expect(list["rollouts"]?.array?.count == 1, "one rollout after the restart, not a copy: \(list)")

            let history = RolloutHistory()
            let done = try await rig.waitForRollout(id, timeout: .seconds(90), history: history, "completed after the restart") {
                $0.state == "completed"
            }
            #expect(done.counts == ["succeeded": fleet.count], "\(done)")
            // Every agent was online throughout: none is ever offline or timed out.
            #expect(history.everSeen(in: "offline").isEmpty && history.everSeen(in: "timed_out").isEmpty,
                    "devices that never went offline were shown offline or timed_out after the restart: \(history.everSeen(in: "offline").union(history.everSeen(in: "timed_out")))")

            // The wire: waves 0 and 1 not written again; wave 2 written after
            // the restart, and it applied what it was given.
            for device in finished {
                #expect(probe.desiredWrites(for: device, after: restartMark).isEmpty,
                        "\(device) (finished before the kill) was written again: \(probe.desiredWrites(for: device, after: restartMark))")
                #expect(done.version(of: device) == before.version(of: device), "\(done)")
            }
            var lastApplied: FleetProbe.Message?
            for device in before.members(ofWave: 1) {
                let version = try #require(before.version(of: device))
                let applied = try #require(probe.reported(device, version: version, state: "applied", after: mark), "\(device)")
                if lastApplied.map({ applied.index > $0.index }) ?? true { lastApplied = applied }
            }
            var firstWave2: FleetProbe.Message?
            for device in waiting {
                let version = try #require(done.version(of: device), "\(done)")
                let written = probe.desiredWrites(for: device, after: restartMark)
                let first = try #require(written.first, "\(device) was never written")
                #expect(written.allSatisfy { $0["version"]?.int == version }, "\(device) was written with one version, \(version): \(written)")
                #expect(first["config"]?.sameConfig(as: config) == true, "\(first)")
                try await probe.waitForReported(device, version: version, state: "applied", after: restartMark)
                if firstWave2.map({ first.index < $0.index }) ?? true { firstWave2 = first }
            }
            // The bake that began before the kill still held after it.
            if let lastApplied, let firstWave2 {
                let gap = firstWave2.arrival.timeIntervalSince(lastApplied.arrival)
                #expect(gap >= bake - 0.3, "wave 2 was written \(gap) s after wave 1's last device applied; bake_s is \(bake)")
            }
        }
    }
}
