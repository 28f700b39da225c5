import FleetTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Usage and sessions: what the console counts equals what the devices counted.
extension ConsoleEndToEndTests {
    @Test("usage totals equal the agents' ledgers after completed, aborted (stop_session) and interrupted (SIGKILL, restart) sessions at two sites; days add up; sessions and metrics agree")
    func usageTotalsEqualLedgers() async throws {
        let completedOn = [Fleet.device(Fleet.north, "north-01"), Fleet.device(Fleet.south, "south-01")]
        let stoppedOn = [Fleet.device(Fleet.north, "north-02"), Fleet.device(Fleet.south, "south-02")]
        let killedOn = [Fleet.device(Fleet.north, "north-03"), Fleet.device(Fleet.south, "south-03")]
        let all = completedOn + stoppedOn + killedOn
        try await ConsoleRig.run(agents: all) { rig in
            let probe = rig.probe

            // One start for all six (two sites, listed as site/device).
            let submitted = try await rig.submit([
                "action": "start_session", "params": ["program": "sole-vitality"],
                "targets": ["devices": .array(all.map { .string("\($0)") })],
            ])
            let id = try #require(submitted["id"]?.string)
            #expect(submitted.addresses == Set(all), "\(submitted)")
            let record = try await rig.waitUntilFinished(id)
            var sessions: [FleetProbe.Device: String] = [:]
            for device in all {
                sessions[device] = try #require(record.result(for: device)?["result"]?["session_id"]?.string, "\(device): \(record)")
            }
            for device in stoppedOn + killedOn {
                try await probe.waitForEvent(type: "session_step", sessionID: sessions[device], on: device) { $0["step_index"]?.int == 1 }
            }

            // Aborted: stop_session through the console.
            let stop = try await rig.submit([
                "action": "stop_session", "targets": ["devices": .array(stoppedOn.map { .string("\($0)") })],
            ])
            let stopped = try await rig.waitUntilFinished(try #require(stop["id"]?.string))
            for device in stoppedOn {
                #expect(stopped.state(of: device) == "succeeded", "\(stopped)")
                try await probe.waitForEvent(type: "session_aborted", sessionID: sessions[device], on: device, timeout: .seconds(15)) {
                    $0["reason"]?.string == "remote_stop"
                }
            }

            // Interrupted: SIGKILL mid-session, then a restart on the same data.
            for device in killedOn {
                let agent = try rig.agent(device)
                agent.kill()
                #expect(try await agent.waitForExit() == .signalled(SIGKILL))
            }
            for device in killedOn {
                try await rig.agent(device).restart(probe: probe)
                try await probe.waitForEvent(type: "session_aborted", sessionID: sessions[device], on: device, timeout: .seconds(15)) {
                    $0["reason"]?.string == "interrupted"
                }
            }
            for device in completedOn {
                try await probe.waitForEvent(type: "session_completed", sessionID: sessions[device], on: device, timeout: .seconds(30))
            }

            // The agents' ledgers are final once each counts its session.
            for device in completedOn {
                try await probe.waitForUsage(device, "usage counting the completed session") { Ledger($0.json).completed == 1 }
            }
            for device in stoppedOn {
                try await probe.waitForUsage(device, "usage counting the stopped session") { Ledger($0.json).aborted["remote_stop"] == 1 }
            }
            for device in killedOn {
                try await probe.waitForUsage(device, "usage counting the interrupted session") { Ledger($0.json).aborted["interrupted"] == 1 }
            }

            // The console's totals: the sum of the ledgers, per site.
            let expected = try await rig.waitForUsageTotals(equalToLedgersOf: all)
            for site in [Fleet.north, Fleet.south] {
                let ledger = try #require(expected[site])
                #expect(ledger.started == 3 && ledger.completed == 1 && ledger.aborted == ["remote_stop": 1, "interrupted": 1],
                        "\(site): \(ledger)")
                #expect(!ledger.byZone.isEmpty && !ledger.byPoint.isEmpty && !ledger.byTechnique.isEmpty && !ledger.byProgram.isEmpty,
                        "\(site): \(ledger)")
            }

            // By day (in each site's time zone): the days add up to the totals.
            let report = try await rig.getJSON("/api/v1/usage?from=\(Day.string(plus: -1))&to=\(Day.string(plus: 1))")
            for site in [Fleet.north, Fleet.south] {
                let days = (report["days"]?.array ?? []).filter { $0["site"]?.string == site }
                #expect(!days.isEmpty, "\(site) has usage days: \(report)")
                for day in days {
                    #expect(day["day"]?.string?.count == 10, "YYYY-MM-DD: \(day)")
                }
                let ledger = try #require(expected[site])
                let sessionsByDay = days.map { Ledger(["sessions": $0["sessions"] ?? .null]) }.reduce(Ledger(), +)
                #expect(sessionsByDay.started == ledger.started && sessionsByDay.completed == ledger.completed
                        && sessionsByDay.aborted == ledger.aborted, "\(site): the days' sessions \(sessionsByDay) vs totals \(ledger)")
                for (category, seconds) in [("zone", ledger.byZone), ("point", ledger.byPoint),
                                            ("technique", ledger.byTechnique), ("program", ledger.byProgram)] {
                    for (key, total) in seconds {
                        let minutes = days.reduce(0.0) { sum, day in
                            let group = day["minutes"]?[category] ?? day["minutes"]?["by_\(category)"]
                            return sum + (group?[key]?.double ?? 0)
                        }
                        #expect(abs(minutes * 60 - total) < 1, "\(site) \(category) \(key): \(minutes) min by day vs \(total) s in total")
                    }
                }
            }

            // Sessions built from events, per device.
            for device in all {
                let outcome = completedOn.contains(device) ? "completed" : "aborted"
                let reason: String? = completedOn.contains(device) ? nil : stoppedOn.contains(device) ? "remote_stop" : "interrupted"
                let response = try await rig.waitFor(
                    "/api/v1/devices/\(device.site)/\(device.device)", timeout: .seconds(10),
                    "\(device): session \(sessions[device] ?? "?") \(outcome) \(reason ?? "")"
                ) { response in
                    let session = (response.json?["recent_sessions"]?.array ?? []).filter { $0["session_id"]?.string == sessions[device] }
                    return session.count == 1 && session[0]["outcome"]?.string == outcome && session[0]["reason"]?.string == reason
                }
                let detail = try #require(response.json)
                let session = (detail["recent_sessions"]?.array ?? []).filter { $0["session_id"]?.string == sessions[device] }
                #expect(session.first?["program"]?.string == "sole-vitality", "\(session)")
                #expect(Ledger(detail["usage"]) == Ledger(probe.latestUsage(device)?.json), "\(device)'s own usage: \(detail["usage"] ?? .null)")
            }

            // The metrics agree.
            let metrics = try await rig.metrics()
            for name in ["fleet_devices", "fleet_sessions_total", "fleet_session_aborts_total", "fleet_ingest_messages_total",
                         "fleet_ingest_malformed_total", "fleet_ingest_lag_seconds", "fleet_alerts_active"] {
                #expect(metrics.has(name), "/metrics has \(name):\n\(metrics)")
            }
            #expect(metrics.value("fleet_sessions_total") == 6, "six sessions (started, and ended): \(metrics)")
            #expect(metrics.value("fleet_session_aborts_total", ["reason": "remote_stop"]) == 2, "\(metrics)")
            #expect(metrics.value("fleet_session_aborts_total", ["reason": "interrupted"]) == 2, "\(metrics)")
            #expect((metrics.value("fleet_ingest_messages_total") ?? 0) > 0, "\(metrics)")
            let lag = metrics.value("fleet_ingest_lag_seconds") ?? -1
            #expect(lag >= 0 && lag.isFinite, "fleet_ingest_lag_seconds: \(metrics)")
            let sites = try #require(try await rig.getJSON("/api/v1/sites")["sites"]?.array)
            for site in [Fleet.north, Fleet.south] {
                let summary = sites.first { $0["site"]?.string == site }
                #expect(summary?["sessions_today"]?.int == 3, "\(site): \(String(describing: summary))")
                #expect(summary?["devices"]?.int == 3 && summary?["online"]?.int == 3, "\(String(describing: summary))")
            }
        }
    }

    @Test("a usage counter reset (a device's ledger lost) is detected, not subtracted; an older usage replayed changes nothing")
    func usageCounterResetIsNotSubtracted() async throws {
        try await ConsoleRig.run(agents: []) { rig in
            let device = try await CraftedDevice.connect(Fleet.device(Fleet.lab, "reset-01"), broker: rig.broker, epoch: 1)
            func usage(_ sessions: Int) -> WireJSON {
                let seconds = WireJSON.int(570 * sessions)
                return [
                    "sessions": ["started": .int(sessions), "completed": .int(sessions), "aborted": [:]],
                    "seconds": ["by_zone": ["arch": seconds], "by_point": ["ki1": seconds], "by_technique": ["shiatsu": seconds],
                                "by_program": ["sole-vitality": seconds]],
                    "outbox_dropped": 0,
                ]
            }
            func expectTotals(_ sessions: Int, _ what: String) async throws {
                try await rig.waitFor("/api/v1/usage?site=\(Fleet.lab)&from=\(Day.string(plus: -1))&to=\(Day.string(plus: 1))", what) {
                    Ledger($0.json?["totals"]?[Fleet.lab]) == Ledger(usage(sessions))
                }
            }
            let first = try await device.publish("usage", usage(3), seq: 1)
            try await expectTotals(3, "three sessions in the first ledger")
            // The device lost its ledger: a new epoch counts from zero again.
            try await device.publish("usage", usage(1), seq: 1, epoch: 2)
            try await expectTotals(4, "3 + 1: a reset is a new baseline, not a negative delta")
            try await device.publish("usage", usage(2), seq: 2, epoch: 2)
            try await expectTotals(5, "3 + 2")
            // The first message again, as a late replay: older than what the console holds.
            let replay = first.setting("historical", to: true)
            try await device.publishRaw("usage", replay.bytes)
            try await rig.barrier()
            let totals = try await rig.getJSON("/api/v1/usage?from=\(Day.string(plus: -1))&to=\(Day.string(plus: 1))")["totals"]
            #expect(Ledger(totals?[Fleet.lab]) == Ledger(usage(5)), "an older ledger does not count again: \(totals ?? .null)")
            await device.close()
        }
    }
}
