import FleetTestSupport
import Foundation
import Testing

// Rollouts (issue 6): validation, one rollout per device, who may do what.
extension ConsoleEndToEndTests {
    @Test("rollout documents: a bad one is refused 400 with every reason, each naming its key (the config checked against the engine's limits), by the API and by the CLI, and no rollout starts and no device is written")
    func rolloutBadDocumentsAreRefused() async throws {
        let fleet = [Fleet.device(Fleet.north, "north-01"), Fleet.device(Fleet.south, "south-01")]
        try await ConsoleRig.run(agents: fleet) { rig in
            let api = rig.api
            let admin = rig.tokens.admin
            let mark = rig.probe.mark()
            let good: WireJSON = [
                "name": "fine but for one thing",
                "config": RolloutFleet.shorterSessions,
                "targets": RolloutFleet.bothSites,
                "waves": ["canary": 1, "percentages": [100]],
                "bake_s": 0,
                "apply_timeout_s": 10,
            ]

            func expectRefused(_ body: [UInt8], naming keys: [String], sourceLocation: SourceLocation = #_sourceLocation) async throws {
                let response = try await api.request("POST", "/api/v1/rollouts", token: admin, body: body)
                #expect(response.status == 400, "\(response)", sourceLocation: sourceLocation)
                #expect(response.hasErrorShape, "{\"error\": {\"code\", \"message\"}}: \(response)", sourceLocation: sourceLocation)
                let message = response.errorMessage ?? ""
                let missing = keys.filter { !message.contains($0) }
                #expect(missing.isEmpty, "the message names every bad key; missing \(missing): \(response)", sourceLocation: sourceLocation)
            }

            // The console's own validation refuses a config no device would take.
            try await expectRefused(good.setting("config", to: ["max_session_minutes": 99]).bytes, naming: ["max_session_minutes"])
            try await expectRefused(
                good.setting("config", to: ["pressure_ceiling_mmhg": ["calf": 500]]).bytes, naming: ["pressure_ceiling_mmhg"])

            // Everything but the config wrong: every reason, each naming its key.
            let documentKeys = [
                "name", "targets", "waves.canary", "waves.percentages", "bake_s", "apply_timeout_s",
                "error_threshold.percent", "error_threshold.min_executed", "error_threshold.action",
                "maintenance_window.days", "maintenance_window.start", "maintenance_window.end", "on_abort", "lifetime_h",
            ]
            let wrongButTheConfig: WireJSON = [
                "name": "",
                "config": RolloutFleet.shorterSessions,
                "targets": [:],
                "waves": ["canary": 0, "percentages": [50, 90]],
                "bake_s": -1,
                "apply_timeout_s": 0,
                "error_threshold": ["percent": 150, "min_executed": 0, "action": "explode"],
                "maintenance_window": ["days": ["funday"], "start": "25:00", "end": "7pm"],
                "on_abort": "panic",
                "lifetime_h": -1,
            ]
            try await expectRefused(wrongButTheConfig.bytes, naming: documentKeys)
            // Everything wrong at once, the config too: still every reason.
            let everything: WireJSON = [
                "name": "",
                "config": ["max_session_minutes": 99, "pressure_ceiling_mmhg": ["calf": 500]],
                "targets": [:],
                "waves": ["canary": 0, "percentages": [50, 90]],
                "bake_s": -1,
                "apply_timeout_s": 0,
                "error_threshold": ["percent": 150, "min_executed": 0, "action": "explode"],
                "maintenance_window": ["days": ["funday"], "start": "25:00", "end": "7pm"],
                "on_abort": "panic",
                "lifetime_h": -1,
            ]
            try await expectRefused(everything.bytes, naming: documentKeys + ["max_session_minutes", "pressure_ceiling_mmhg"])
            // Unknown keys, at the top and in the config: both named.
            try await expectRefused(
                good.setting("colour", to: "blue").setting("config", to: ["max_session_minutes": 18, "volume": 11]).bytes,
                naming: ["colour", "volume"])
            // Required keys missing: each named.
            try await expectRefused(([:] as WireJSON).bytes, naming: ["name", "config", "targets", "waves"])
            // Not a document at all.
            try await expectRefused(Array("roll it all out".utf8), naming: [])

            // The CLI sends the YAML and shows the reasons.
            let file = try rig.writeFile("bad-rollout.yaml", """
                name: too long and no canary
                config: {max_session_minutes: 99}
                targets: {sites: [clinic-north]}
                waves: {canary: 0, factor: 2}
                """)
            let cli = try await rig.cli(["rollout", "create", file])
            #expect(!cli.succeeded, "\(cli)")
            let said = cli.standardError + cli.standardOutput
            #expect(said.contains("max_session_minutes") && said.contains("canary"), "the CLI shows every reason: \(cli)")

            // Nothing started, nothing written.
            let list = try await rig.getJSON("/api/v1/rollouts")
            #expect(list["rollouts"]?.array?.isEmpty == true, "\(list)")
            for device in fleet {
                #expect(rig.probe.desiredWrites(for: device, after: mark).isEmpty, "\(device) was written")
            }
        }
    }

    @Test("rollouts never share a device: one over a device of a running or paused rollout is refused 409 naming that rollout, a disjoint one is accepted, and once the first is aborted its devices are free")
    func rolloutOverlappingTargetsConflict() async throws {
        let north1 = Fleet.device(Fleet.north, "north-01")
        let north2 = Fleet.device(Fleet.north, "north-02")
        let south1 = Fleet.device(Fleet.south, "south-01")
        let south2 = Fleet.device(Fleet.south, "south-02")
        try await ConsoleRig.run(agents: [north1, north2, south1, south2]) { rig in
            func document(_ name: String, targets: WireJSON, onAbort: String = "rollback") -> WireJSON {
                // A long bake keeps it running after its canary.
                [
                    "name": .string(name), "config": RolloutFleet.shorterSessions, "targets": targets,
                    "waves": ["canary": 1, "percentages": [100]], "bake_s": 3600, "apply_timeout_s": 30,
                    "on_abort": .string(onAbort),
                ]
            }
            func expectConflict(_ body: WireJSON, with other: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
                let response = try await rig.api.post("/api/v1/rollouts", json: body, token: rig.tokens.admin)
                #expect(response.status == 409, "\(response)", sourceLocation: sourceLocation)
                #expect(response.errorCode == "conflict", "\(response)", sourceLocation: sourceLocation)
                #expect(response.errorMessage?.contains(other) == true, "the message names rollout \(other): \(response)", sourceLocation: sourceLocation)
            }

            let first = try await rig.createRollout(document("north first", targets: ["sites": [.string(Fleet.north)]], onAbort: "leave"))
            let overlapping = document("overlaps", targets: RolloutFleet.addresses([north2, south1]).wrapped(as: "devices"))
            let mark = rig.probe.mark()
            try await expectConflict(overlapping, with: first.id)
            #expect(rig.probe.desiredWrites(for: south1, after: mark).isEmpty, "the refused rollout wrote \(south1)")

            // Disjoint: fine, and two rollouts run side by side.
            let disjoint = try await rig.createRollout(document("south only", targets: ["sites": [.string(Fleet.south)]]))
            #expect(disjoint.state == "running", "\(disjoint)")
            let abortSouth = try await rig.controlRollout(disjoint.id, "abort")
            #expect(abortSouth.status == 200, "\(abortSouth)")

            // Paused still holds its devices.
            let paused = try await rig.controlRollout(first.id, "pause")
            #expect(paused.status == 200 && paused.json?["state"]?.string == "paused", "\(paused)")
            try await expectConflict(overlapping, with: first.id)
            try await expectConflict(document("one device", targets: RolloutFleet.addresses([north1]).wrapped(as: "devices")), with: first.id)

            // Aborted: the devices are free again. (`on_abort: leave`: the
            // canary keeps the config it took; nothing is written back.)
            let firstCanary = try #require(first.members(ofWave: 0).first, "\(first)")
            try await rig.waitForRollout(first.id, timeout: .seconds(20), "the canary \(firstCanary) succeeded") {
                $0.state(of: firstCanary) == "succeeded"
            }
            let abortMark = rig.probe.mark()
            let aborted = try await rig.controlRollout(first.id, "abort")
            #expect(aborted.status == 200 && aborted.json?["state"]?.string == "aborted", "\(aborted)")
            let second = try await rig.createRollout(overlapping)
            #expect(second.state == "running" && Set(second.addresses) == [north2, south1], "\(second)")
            let secondCanary = try #require(second.members(ofWave: 0).first, "\(second)")
            try await rig.probe.waitForMessage(on: secondCanary, kind: "config/desired", after: abortMark, timeout: .seconds(20),
                                               "the second rollout's canary \(secondCanary) written")
            let afterAbort = rig.probe.desiredWrites(for: firstCanary, after: abortMark)
            #expect(afterAbort.allSatisfy { $0["config"]?.sameConfig(as: RolloutFleet.shorterSessions) == true },
                    "on_abort: leave, yet \(firstCanary) was written another config: \(afterAbort)")
            let list = try await rig.getJSON("/api/v1/rollouts")
            #expect(Set(list["rollouts"]?.array?.compactMap { $0["id"]?.string } ?? []) == [first.id, disjoint.id, second.id], "\(list)")
        }
    }

    @Test("rollout control is admin-only: viewers and operators read rollouts, but creating, pausing, resuming and aborting one is 403 for them (401 without a token); an admin does each, through the API and the CLI, and each action is in the audit log")
    func rolloutControlIsAdminOnly() async throws {
        let fleet = [Fleet.device(Fleet.north, "north-01"), Fleet.device(Fleet.south, "south-01")]
        try await ConsoleRig.run(agents: fleet) { rig in
            let api = rig.api
            let tokens = rig.tokens
            let document: WireJSON = [
                "name": "admins only", "config": RolloutFleet.shorterSessions, "targets": RolloutFleet.bothSites,
                "waves": ["canary": 1, "percentages": [100]], "bake_s": 3600, "apply_timeout_s": 30,
            ]

            // Create: admin only.
            for (who, token) in [("viewer", tokens.viewer), ("operator", tokens.operator), ("site operator", tokens.siteOperator)] {
                let response = try await api.post("/api/v1/rollouts", json: document, token: token)
                #expect(response.status == 403 && response.errorCode == "forbidden", "\(who): \(response)")
            }
            let anonymous = try await api.post("/api/v1/rollouts", json: document, token: nil)
            #expect(anonymous.status == 401, "\(anonymous)")
            #expect(try await rig.getJSON("/api/v1/rollouts")["rollouts"]?.array?.isEmpty == true, "nothing was created")

            let rollout = try await rig.createRollout(document)
            let id = rollout.id

            // Read: viewer and operator.
            for (who, token) in [("viewer", tokens.viewer), ("operator", tokens.operator)] {
                let list = try await rig.getJSON("/api/v1/rollouts", token: token)
                #expect(list["rollouts"]?.array?.contains { $0["id"]?.string == id } == true, "\(who): \(list)")
                #expect(try await rig.rollout(id, token: token).id == id, "\(who)")
            }
            let unknown = try await api.get("/api/v1/rollouts/ro-does-not-exist", token: tokens.viewer)
            #expect(unknown.status == 404 && unknown.hasErrorShape, "\(unknown)")

            // Pause, resume, abort: 403 for an operator, state unchanged.
            for action in ["pause", "resume", "abort"] {
                let response = try await rig.controlRollout(id, action, token: tokens.operator)
                #expect(response.status == 403 && response.errorCode == "forbidden", "operator \(action): \(response)")
                let viewer = try await rig.controlRollout(id, action, token: tokens.viewer)
                #expect(viewer.status == 403, "viewer \(action): \(viewer)")
            }
            let denied = try await rig.cli(["rollout", "pause", id], token: tokens.operator)
            #expect(!denied.succeeded, "the CLI with an operator token: \(denied)")
            #expect(try await rig.rollout(id).state == "running", "nothing changed")

            // An admin, through the CLI.
            func control(_ action: String, expect state: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
                let run = try await rig.cli(["rollout", action, id, "--json"])
                #expect(run.succeeded, "rollout \(action): \(run)", sourceLocation: sourceLocation)
                #expect((try? WireJSON.parse(run.standardOutput))?["state"]?.string == state, "rollout \(action): \(run)", sourceLocation: sourceLocation)
                #expect(try await rig.rollout(id).state == state, "after \(action)", sourceLocation: sourceLocation)
            }
            try await control("pause", expect: "paused")
            let status = try await rig.cli(["rollout", "status", id], token: tokens.viewer)
            #expect(status.succeeded && status.standardOutput.contains(id) && status.standardOutput.contains("paused"), "\(status)")
            try await control("resume", expect: "running")
            try await control("abort", expect: "aborted")

            // Each admin action is in the audit log.
            let audit = try await rig.auditEntries(mentioning: id)
            let byAdmin = audit.filter { $0["actor"]?.string == "admin" }.map { $0.text.lowercased() }
            for word in ["pause", "resume", "abort"] {
                #expect(byAdmin.contains { $0.contains(word) }, "admin's \(word) in the audit log: \(audit)")
            }
            #expect(byAdmin.count >= 4, "create, pause, resume, abort by admin: \(audit)")
        }
    }
}
