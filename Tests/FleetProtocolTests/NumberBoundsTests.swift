import FleetProtocol
import Foundation
import Testing

/// Issue 20, item 1: every number a device sends is bounded when it is
/// decoded (docs/protocol.md, "Limits"), so the console never adds to,
/// converts or shows a number that traps. The largest allowed value is
/// accepted; one past it is refused with a message naming the field.
@Suite("Bounds of the numbers in agent messages")
struct NumberBoundsTests {
    static let max = ProtocolLimits.maxInteger  // 2^53
    static let ts = "\"ts\":\"2025-03-01T10:00:00.000Z\""

    static func envelope(epoch: String = "7", seq: String = "1") -> String { "\(ts),\"epoch\":\(epoch),\"seq\":\(seq)" }

    static func decode(_ kind: DeviceTopicKind, _ json: String) -> Result<AgentPayload, ProtocolError> {
        AgentPayload.decode(kind: kind, payload: Array(json.utf8))
    }

    /// The refusal's message, or nil when the payload decoded.
    static func refusal(_ kind: DeviceTopicKind, _ json: String) -> String? {
        if case .failure(let error) = decode(kind, json) { return error.message }
        return nil
    }

    static let status = #""state":"online","agent_version":"1","programs":[],"capabilities":[],"config_version":"#
    static let usageBody = #""sessions":{"started":1,"completed":0,"aborted":{}},"seconds":{"by_zone":{},"by_point":{},"by_technique":{},"by_program":{}},"outbox_dropped":0"#

    @Test("epoch and seq: 2^53 is accepted; 2^53 + 1, UInt64.max and 2^64 are refused, naming the field, on every agent topic")
    func envelopeBounds() {
        let bodies: [(DeviceTopicKind, String)] = [
            (.status, Self.status + "0"),
            (.telemetry, #""session_state":"idle","pressure_mmhg":{},"motor_temp_c":30,"faults":[],"interval_s":1"#),
            (.events, #""type":"fault_cleared","fault":"overheat""#),
            (.usage, Self.usageBody),
            (.configReported, #""version":1,"state":"applied""#),
        ]
        for (kind, body) in bodies {
            #expect(Self.refusal(kind, "{\(body),\(Self.envelope(epoch: "\(Self.max)", seq: "\(Self.max)"))}") == nil, "\(kind) at 2^53")
            for field in ["epoch", "seq"] {
                for bad in ["\(Self.max + 1)", "\(UInt64.max)", "18446744073709551616", "-1", "1.5"] {
                    let envelope = field == "epoch" ? Self.envelope(epoch: bad) : Self.envelope(seq: bad)
                    let message = Self.refusal(kind, "{\(body),\(envelope)}")
                    #expect(message?.hasPrefix("\(field): expected an integer 0–9007199254740992 (2^53)") == true,
                            "\(kind) \(field) = \(bad): \(message ?? "accepted")")
                }
            }
        }
    }

    @Test("usage counters, versions and config_version stop at 2^53, each refusal naming its path")
    func counterBounds() {
        let over = "\(Self.max + 1)"
        let e = Self.envelope()
        let cases: [(DeviceTopicKind, String, String)] = [
            (.status, "{\(Self.status)\(over),\(e)}", "config_version"),
            (.usage, "{\(Self.usageBody.replacingOccurrences(of: #""started":1"#, with: "\"started\":\(over)")),\(e)}", "sessions.started"),
            (.usage, "{\(Self.usageBody.replacingOccurrences(of: #""aborted":{}"#, with: "\"aborted\":{\"pain_signal\":\(UInt64.max)}")),\(e)}",
             "sessions.aborted.pain_signal"),
            (.usage, "{\(Self.usageBody.replacingOccurrences(of: #""by_zone":{}"#, with: "\"by_zone\":{\"calf\":\(over)}")),\(e)}", "seconds.by_zone.calf"),
            (.usage, "{\(Self.usageBody.replacingOccurrences(of: #""outbox_dropped":0"#, with: "\"outbox_dropped\":\(over)")),\(e)}", "outbox_dropped"),
            (.configReported, #"{"version":\#(over),"state":"applied",\#(e)}"#, "version"),
            (.configReported, #"{"version":1,"applied_version":\#(UInt64.max),"state":"applied",\#(e)}"#, "applied_version"),
            (.events, #"{"type":"config_applied","config_version":\#(over),\#(e)}"#, "config_version"),
        ]
        for (kind, json, path) in cases {
            let message = Self.refusal(kind, json)
            #expect(message?.hasPrefix("\(path): expected an integer 0–9007199254740992 (2^53)") == true, "\(path): \(message ?? "accepted")")
        }
        // The largest allowed counters are accepted.
        let top = Self.usageBody.replacingOccurrences(of: #""started":1"#, with: "\"started\":\(Self.max)")
            .replacingOccurrences(of: #""by_zone":{}"#, with: "\"by_zone\":{\"calf\":\(Self.max)}")
        guard case .success(.usage(let usage)) = Self.decode(.usage, "{\(top),\(e)}") else {
            Issue.record("usage at 2^53 refused: \(Self.refusal(.usage, "{\(top),\(e)}") ?? "")")
            return
        }
        #expect(usage.sessions.started == Self.max && usage.seconds.byZone["calf"] == Self.max)
    }

    @Test("telemetry and events: measurements are finite and physical, indexes and intensities in their ranges")
    func measurementBounds() {
        let e = Self.envelope()
        func telemetry(_ fields: String) -> String {
            var base: [String: String] = [
                "session_state": #""running""#, "pressure_mmhg": #"{"calf":38.5}"#, "motor_temp_c": "41.2", "faults": "[]", "interval_s": "1",
            ]
            for part in fields.split(separator: ";") {
                let kv = part.split(separator: "=", maxSplits: 1)
                base[String(kv[0])] = String(kv[1])
            }
            return "{" + base.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + ",\(e)}"
        }
        func stepJSON(index: String = "0", intensity: String = "3") -> String {
            #"{"index":\#(index),"target":"calf","zone":"calf","technique":"kneading","intensity":\#(intensity)}"#
        }
        // Within the limits: accepted, edges included.
        for fields in ["pressure_mmhg={\"calf\":10000,\"shin\":-1000}", "motor_temp_c=-273.15", "motor_temp_c=1000", "interval_s=86400",
                       "elapsed_s=86400", "step=\(stepJSON(index: "99", intensity: "10"))", "breathing_bpm=60"] {
            #expect(Self.refusal(.telemetry, telemetry(fields)) == nil, "\(fields): \(Self.refusal(.telemetry, telemetry(fields)) ?? "")")
        }
        let refused: [(String, String)] = [
            ("pressure_mmhg={\"calf\":1e308}", "pressure_mmhg.calf: expected a number -1000–10000"),
            ("pressure_mmhg={\"calf\":-5000}", "pressure_mmhg.calf: expected a number -1000–10000"),
            ("pressure_mmhg=[]", "pressure_mmhg: expected an object of numbers -1000–10000"),
            ("motor_temp_c=1e300", "motor_temp_c: expected a number -273.15–1000"),
            ("motor_temp_c=-300", "motor_temp_c: expected a number -273.15–1000"),
            ("interval_s=0", "interval_s: expected a number 0.001–86400"),
            ("interval_s=1e20", "interval_s: expected a number 0.001–86400"),
            ("elapsed_s=-1", "elapsed_s: expected a number 0–86400"),
            ("step=\(stepJSON(index: "9223372036854775807"))", "step.index: expected an integer 0–99"),
            ("step=\(stepJSON(index: "-1"))", "step.index: expected an integer 0–99"),
            ("step=\(stepJSON(intensity: "11"))", "step.intensity: expected an integer 1–10"),
            ("breathing_bpm=9223372036854775807", "breathing_bpm: expected an integer 1–60"),
        ]
        for (fields, expected) in refused {
            let message = Self.refusal(.telemetry, telemetry(fields))
            #expect(message?.hasPrefix(expected) == true, "\(fields): \(message ?? "accepted")")
        }
        // A number too large for a Double at all is refused too (not read as infinity).
        #expect(Self.refusal(.telemetry, telemetry("motor_temp_c=1e400")) != nil)

        func event(_ fields: String) -> String { #"{"type":"session_step","session_id":"s-1","program":"p",\#(fields),\#(e)}"# }
        let eventCases: [(String, String?)] = [
            (#""step_index":99,"step_count":100,"intensity":10,"duration_s":86400"#, nil),
            (#""step_index":9223372036854775807"#, "step_index: expected an integer 0–99"),
            (#""step_count":0"#, "step_count: expected an integer 1–100"),
            (#""intensity":0"#, "intensity: expected an integer 1–10"),
            (#""duration_s":9223372036854775807"#, "duration_s: expected an integer 0–86400"),
            (#""elapsed_s":1e308"#, "elapsed_s: expected a number 0–86400"),
        ]
        for (fields, expected) in eventCases {
            let message = Self.refusal(.events, event(fields))
            if let expected {
                #expect(message?.hasPrefix(expected) == true, "\(fields): \(message ?? "accepted")")
            } else {
                #expect(message == nil, "\(fields): \(message ?? "")")
            }
        }
    }

    /// The bounded decoders are written by hand: a field added to a message
    /// must be read there too, or it would silently decode as nil.
    @Test("every agent message round-trips through its bounded decoder with every field set")
    func everyFieldRoundTrips() throws {
        let envelope = Envelope(ts: Date(timeIntervalSince1970: 1_740_823_200), epoch: 7, seq: 3)
        let telemetry = Telemetry(
            sessionState: .running, sessionID: "s-7-1", program: "calf-release",
            step: CurrentStep(index: 2, target: "sp6", zone: "calf", point: "sp6", technique: "kneading", intensity: 4, remainingSeconds: 12.5),
            elapsedSeconds: 95.5, pressureMMHg: ["calf": 38.5], motorTempC: 41.2, breathingBPM: 6, faults: ["overheat"],
            acknowledgeable: ["pressure_sensor"], lockout: .init(reason: "pain_signal", zone: "calf", point: "sp6", remainingSeconds: 90),
            intervalSeconds: 1)
        let event = Event(
            type: .sessionStep, sessionID: "s-7-1", program: "p", reason: .painSignal, source: "device", commandID: "c", intensity: 4,
            elapsedSeconds: 3, stepIndex: 1, stepCount: 3, target: "gb34", zone: "shin", point: "gb34", technique: "circular",
            durationSeconds: 120, scheduleID: "sch-1", at: envelope.ts, error: .busy("x"), fault: "overheat", message: "m",
            configVersion: 5, reasons: ["r"])
        let usage = Usage(sessions: SessionCounts(started: 3, completed: 1, aborted: ["pain_signal": 2]),
                          seconds: UsageSeconds(byZone: ["calf": 1], byPoint: ["sp6": 2], byTechnique: ["kneading": 3], byProgram: ["p": 4]),
                          outboxDropped: 5)
        let status = Status(state: .offline, agentVersion: "1", programs: ["p"], configVersion: 4, capabilities: ["pause"], reason: .shutdown)
        let reported = ReportedConfig(version: 6, state: .rejected, appliedVersion: 5, error: "e", reasons: ["r"])
        func roundTrip<B: AgentMessage>(_ body: B) throws -> B {
            let bytes = Array(try FleetJSON.encode(Stamped(body, envelope: envelope)))
            return try FleetJSON.decode(Stamped<B>.self, from: bytes).get().body
        }
        #expect(try roundTrip(telemetry) == telemetry)
        #expect(try roundTrip(event) == event)
        #expect(try roundTrip(usage) == usage)
        #expect(try roundTrip(status) == status)
        #expect(try roundTrip(reported) == reported)
        let lockout = #"{"session_state":"idle","pressure_mmhg":{},"motor_temp_c":30,"faults":[],"interval_s":1,"lockout":{"reason":"pain_signal","zone":"calf","remaining_s":1e308},\#(Self.envelope())}"#
        #expect(Self.refusal(.telemetry, lockout)?.hasPrefix("lockout.remaining_s: expected a number 0–86400") == true, "\(Self.refusal(.telemetry, lockout) ?? "accepted")")
    }

    @Test("a desired config's version stops at 2^53, so the version after it never overflows")
    func desiredVersionBound() {
        #expect((try? DesiredConfig.decode(Array(#"{"version":9007199254740992,"config":{}}"#.utf8)).get()) != nil)
        guard case .failure(let rejection) = DesiredConfig.decode(Array(#"{"version":9007199254740993,"config":{}}"#.utf8)) else {
            Issue.record("a version over 2^53 was accepted")
            return
        }
        #expect(rejection.reasons == ["version: expected an integer 1–9007199254740992 (2^53), got 9007199254740993"])
    }
}
