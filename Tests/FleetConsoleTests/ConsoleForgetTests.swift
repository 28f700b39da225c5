import FleetTestSupport
import Foundation
import Testing

// Issue 20, items 10 and 18: forgetting a device, end to end (the built
// console, a real mosquitto, devices played by raw MQTT clients).
extension ConsoleEndToEndTests {
    /// 2^53, the largest epoch the protocol accepts (docs/protocol.md, Limits).
    static let hugeEpoch = 9_007_199_254_740_992

    @Test("a forgotten, revoked device shows revoked, not online — also after a restart with its retained online status still on the broker (item 18)")
    func forgottenDeviceShowsRevoked() async throws {
        try await ConsoleRig.run(agents: []) { rig in
            let id = Fleet.device(Fleet.lab, "stolen-01")
            // The thief's last words: online at an epoch of 2^53, an event, usage; then cut off
            // without a will (a revoked device's will is dropped by the broker's ACL).
            let thief = try await CraftedDevice.connect(id, broker: rig.broker, epoch: Self.hugeEpoch)
            try await thief.publish("events", ["type": "session_started", "session_id": "s-thief", "program": "calf-release", "source": "remote"], seq: 1)
            try await rig.waitFor("/api/v1/devices/\(id.site)/\(id.device)", "the thief's session, stored") {
                $0.json?["device"]?["session"]?["session_id"]?.string == "s-thief" && $0.json?["recent_sessions"]?.array?.count == 1
            }
            await thief.close()
            try await rig.barrier()
            let before = try #require(try await rig.summary(id))
            #expect(before["online"]?.bool == true && before["epoch"]?.int == Self.hugeEpoch, "its retained status says online: \(before)")

            // Only an admin may forget; without a token, 401.
            let path = "/api/v1/devices/\(id.site)/\(id.device)/forget"
            #expect(try await rig.api.post(path, token: nil).status == 401)
            let refused = try await rig.api.post(path, token: rig.tokens.operator)
            #expect(refused.status == 403 && refused["error"]?["code"]?.string == "forbidden", "\(refused)")
            #expect(try await rig.api.post("/api/v1/devices/\(id.site)/Not_An_Id/forget", token: rig.tokens.admin).status == 400)
            let forgotten = try await rig.api.post(path, json: ["reason": "stolen from the lab"], token: rig.tokens.admin)
            #expect(forgotten.status == 200, "\(forgotten)")
            #expect(forgotten["state"]?.string == "revoked" && forgotten["was_known"]?.bool == true && forgotten["events_deleted"]?.int == 1, "\(forgotten)")

            func expectRevoked(_ when: String) async throws {
                let device = try #require(try await rig.summary(id), "\(when): the device is listed")
                #expect(device["state"]?.string == "revoked" && device["online"]?.bool == false, "\(when): \(device)")
                #expect(device["revoked_at"]?.string != nil && device["session"] == nil && device["epoch"] == nil, "\(when): \(device)")
                let listed = try await rig.devices("?state=revoked").about(id)
                #expect(listed.count == 1, "\(when): ?state=revoked lists it")
                #expect(try await rig.alerts().about(id).isEmpty, "\(when): a revoked device raises no alert")
            }
            try await expectRevoked("after the forget")
            let audit = try await rig.getJSON("/api/v1/audit?limit=20")["entries"]?.array ?? []
            #expect(audit.contains { $0["action"]?.string == "device.forget" && $0["targets"]?.string == "\(id)" && ($0["detail"]?.string ?? "").contains("stolen from the lab") },
                    "the forget is in the audit log: \(audit)")
            let table = try await rig.console.runClient(["devices", "--site", Fleet.lab], token: rig.tokens.viewer)
            #expect(table.succeeded && table.standardOutput.contains("stolen-01") && table.standardOutput.contains("revoked"), "\(table)")

            // Restarted, the console gets the thief's retained online status from the broker again: still revoked.
            #expect(try await rig.console.stop() == .exited(0))
            try await rig.console.restart()
            try await rig.barrier()
            try await expectRevoked("after a restart")
            try await rig.waitForMetrics("the retained status replayed at the restart, counted as ignored (a new process counts from 0)") {
                $0.sum("fleet_ingest_revoked_ignored_total") >= 1
            }
            let page = try await rig.api.get("/devices/\(id.site)/\(id.device)", token: rig.tokens.admin)
            #expect(page.status < 500, "the dashboard's device page renders: \(page.status)")
        }
    }

    @Test("a forgotten device starts fresh: after an epoch of 2^53, the same id at epoch 1 is ingested and seen (item 10)")
    func forgottenDeviceStartsFresh() async throws {
        try await ConsoleRig.run(agents: []) { rig in
            let id = Fleet.device(Fleet.lab, "stolen-02")
            let thief = try await CraftedDevice.connect(id, broker: rig.broker, epoch: Self.hugeEpoch)
            try await thief.publish("events", ["type": "session_started", "session_id": "s-thief-2", "program": "calf-release", "source": "remote"], seq: 1)
            try await rig.waitForDevice(id, "the thief's epoch") { $0["epoch"]?.int == Self.hugeEpoch }
            await thief.close()

            // The bug: the massager provisioned again under this id starts at epoch 1, and the
            // console keeps the thief's epoch — its status is taken for a late one and dropped.
            let early = try await CraftedDevice.connect(id, broker: rig.broker, epoch: 1, online: false)
            try await early.publish("status", early.birth, seq: 1, retain: false)
            try await rig.barrier()
            #expect(try await rig.summary(id)?["epoch"]?.int == Self.hugeEpoch, "before the forget, 2^53 shadows epoch 1")
            await early.close()

            let forgotten = try await rig.console.runClient(["forget", "\(id)", "--json", "--reason", "re-provisioned"], token: rig.tokens.admin)
            #expect(forgotten.succeeded, "\(forgotten)")
            #expect((try? WireJSON.parse(forgotten.standardOutput))?["state"]?.string == "revoked", "\(forgotten.standardOutput)")
            let table = try await rig.console.runClient(["forget", "\(id)"], token: rig.tokens.admin)
            #expect(table.succeeded && table.standardOutput.contains("EVENTS DELETED") && table.standardOutput.contains("revoked"), "\(table)")
            let denied = try await rig.console.runClient(["forget", "\(id)"], token: rig.tokens.operator)
            #expect(!denied.succeeded && denied.standardError.contains("403"), "\(denied)")

            // The new massager: epoch 1, live. It is seen, starts fresh, and its events count.
            let fresh = try await CraftedDevice.connect(id, broker: rig.broker, epoch: 1)
            let device = try await rig.waitForDevice(id, "the re-provisioned device at epoch 1, online") {
                $0["epoch"]?.int == 1 && $0["online"]?.bool == true && $0["state"]?.string == "idle"
            }
            #expect(device["device"]?["revoked_at"] == nil && device["device"]?["forgotten_at"]?.string != nil, "\(device)")
            try await fresh.publish("events", ["type": "session_started", "session_id": "s-fresh-1", "program": "calf-release", "source": "remote"], seq: 1)
            try await rig.waitForDevice(id, "the new device's session") { $0["session"]?["session_id"]?.string == "s-fresh-1" }
            // Past sessions are kept as history, beside the new one (committed with the next batch).
            try await rig.waitFor("/api/v1/devices/\(id.site)/\(id.device)", "the thief's and the new device's sessions in recent_sessions") {
                Set(($0.json?["recent_sessions"]?.array ?? []).compactMap { $0["session_id"]?.string }) == ["s-thief-2", "s-fresh-1"]
            }
            // Readmitted, it is asked to republish its retained topics (resync).
            try await waitUntil(timeout: .seconds(10), "a resync command to the re-provisioned device") {
                fresh.commands.contains { (try? WireJSON.parse($0.payload))?["action"]?.string == "resync" }
            }

            // And it stays fresh across a restart: the event table no longer holds the thief's epoch.
            #expect(try await rig.console.stop() == .exited(0))
            try await rig.console.restart()
            try await fresh.publish("events", ["type": "session_completed", "session_id": "s-fresh-1", "program": "calf-release"], seq: 2)
            try await rig.waitForDevice(id, "epoch 1 after the restart, its session ended") {
                $0["epoch"]?.int == 1 && $0["session"] == nil && $0["state"]?.string == "idle"
            }
            await fresh.close()
        }
    }
}
