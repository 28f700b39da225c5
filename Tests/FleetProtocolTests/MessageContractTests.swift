import Foundation
import MassageEngine
import Testing
@testable import FleetProtocol

/// Literal payloads written from DESIGN.md §3 (and docs/protocol.md), decoded;
/// then typed values encoded and their keys inspected.
@Suite("Message payloads and their key names")
struct MessageContractTests {
    let ts = Date(timeIntervalSince1970: 1_740_823_200.25)  // 2025-03-01T10:00:00.250Z

    func keys(_ value: some Encodable) throws -> Set<String> {
        Set(try #require(JSONValue(encoding: value).objectValue).keys)
    }

    func roundTrip<T: Codable & Equatable>(_ value: T) throws {
        let data = try FleetJSON.encode(value, sortedKeys: true)
        #expect(try FleetJSON.decode(T.self, from: data).get() == value)
    }

    @Test("status birth, will and shutdown decode from the contract's JSON")
    func statusFromContract() throws {
        let birth = try FleetJSON.decode(StatusMessage.self, from: Data("""
            {"state":"online","agent_version":"1.0.0","epoch":7,"seq":1,"ts":"2025-03-01T10:00:00.250Z",
             "programs":["knee-relief","calf-release"],"config_version":4,
             "capabilities":["custom_steps","schedule"]}
            """.utf8)).get()
        #expect(birth.body == .online(agentVersion: "1.0.0", programs: ["knee-relief", "calf-release"],
                                      configVersion: 4, capabilities: [.customSteps, .schedule]))
        #expect(birth.envelope == Envelope(ts: ts, epoch: 7, seq: 1))
        let shutdown = try FleetJSON.decode(StatusMessage.self, from: Data(
            #"{"state":"offline","reason":"shutdown","epoch":7,"seq":2,"ts":"2025-03-01T10:00:00Z"}"#.utf8)).get()
        #expect(shutdown.state == .offline)
        #expect(shutdown.reason == .shutdown)
        #expect(try keys(Stamped(Status.online(agentVersion: "1", programs: [], configVersion: 0, capabilities: []),
                                 envelope: .init(ts: ts, epoch: 1, seq: 1)))
            == ["state", "agent_version", "programs", "config_version", "capabilities", "ts", "epoch", "seq"])
        #expect(try keys(Status.offline(reason: .shutdown)) == ["state", "reason"])
        try roundTrip(birth)
        try roundTrip(shutdown)
    }

    @Test("telemetry keys: session state, step, pressure, temperature, breathing, faults, interval")
    func telemetry() throws {
        let literal = try FleetJSON.decode(TelemetryMessage.self, from: Data("""
            {"ts":"2025-03-01T10:00:00.250Z","epoch":7,"seq":120,"session_state":"running","session_id":"s-42",
             "program":"knee-relief","step":{"index":1,"target":"gb34","zone":"shin","point":"gb34",
             "technique":"circular","intensity":4,"remaining_s":35.5},"elapsed_s":95,
             "pressure_mmhg":{"shin":38.5},"motor_temp_c":41.2,"breathing_bpm":6,"faults":[],"interval_s":1}
            """.utf8)).get()
        let expected = Telemetry(
            sessionState: .running, sessionID: "s-42", program: "knee-relief",
            step: CurrentStep(index: 1, target: "gb34", zone: "shin", point: "gb34", technique: "circular",
                              intensity: 4, remainingSeconds: 35.5),
            elapsedSeconds: 95, pressureMMHg: ["shin": 38.5], motorTempC: 41.2, breathingBPM: 6, faults: [],
            intervalSeconds: 1)
        #expect(literal.body == expected)
        #expect(try keys(expected) == ["session_state", "session_id", "program", "step", "elapsed_s", "pressure_mmhg",
                                       "motor_temp_c", "breathing_bpm", "faults", "interval_s"])
        #expect(try keys(expected.step!) == ["index", "target", "zone", "point", "technique", "intensity", "remaining_s"])
        try roundTrip(Stamped(expected, envelope: .init(ts: ts, epoch: 7, seq: 120)))
        try roundTrip(Stamped(Telemetry(sessionState: .idle, motorTempC: 30, intervalSeconds: 10),
                              envelope: .init(ts: ts, epoch: 7, seq: 121)))
    }

    @Test("session events carry type, session_id, program; aborts carry reason")
    func sessionEvents() throws {
        let aborted = try FleetJSON.decode(EventMessage.self, from: Data("""
            {"ts":"2025-03-01T10:00:00.250Z","epoch":7,"seq":12,"type":"session_aborted","session_id":"s-42",
             "program":"calf-release","reason":"pain_signal","elapsed_s":81.5}
            """.utf8)).get()
        #expect(aborted.type == .sessionAborted)
        #expect(aborted.reason == .painSignal)
        #expect(aborted.sessionID == "s-42")
        #expect(aborted.program == "calf-release")
        #expect(aborted.type.isSessionEvent)
        let step = Event(type: .sessionStep, sessionID: "s-42", program: "knee-relief", stepIndex: 1, stepCount: 3,
                         target: "gb34", zone: "shin", point: "gb34", technique: "circular", durationSeconds: 60)
        #expect(try keys(step) == ["type", "session_id", "program", "step_index", "step_count", "target", "zone",
                                   "point", "technique", "duration_s"])
        let scheduled = Event(type: .sessionScheduled, program: "sole-vitality", scheduleID: "sch-1", at: ts)
        #expect(try JSONValue(encoding: scheduled)["at"] == "2025-03-01T10:00:00.250Z")
        let missed = Event(type: .sessionMissed, program: "sole-vitality", scheduleID: "sch-1", at: ts,
                           error: .busy("a session was running"))
        #expect(try JSONValue(encoding: missed)["error"] == ["code": "busy", "message": "a session was running"])
        for event in [step, scheduled, missed, aborted.body] {
            try roundTrip(Stamped(event, envelope: .init(ts: ts, epoch: 7, seq: 13, historical: true)))
        }
    }

    @Test("every event type and abort reason of the contract is known by its exact name")
    func vocabulary() {
        #expect(EventType.known.map(\.rawValue) == [
            "session_scheduled", "session_started", "session_step", "session_paused", "session_resumed",
            "session_completed", "session_aborted", "session_missed", "fault_raised", "fault_cleared",
            "config_applied", "config_rejected", "config_rolled_back",
        ])
        #expect(SessionAbortReason.known.map(\.rawValue) == [
            "pain_signal", "overpressure", "overheat", "sensor_fault", "hardware_fault", "time_limit", "remote_stop",
            "shutdown", "interrupted", "control_overrun",
        ])
        #expect(Action.known.map(\.rawValue) == [
            "start_session", "schedule_session", "cancel_scheduled", "stop_session", "pause_session",
            "resume_session", "adjust_intensity", "get_status", "resync", "ping", "clear_fault",
        ])
        #expect(ErrorCode.known.map(\.rawValue) == [
            "bad_request", "unknown_action", "invalid_params", "busy", "unsafe", "not_found", "expired", "internal",
        ])
        #expect(ConfigApplyState.allCases.map(\.rawValue) == ["applied", "pending", "rejected", "rolled_back"])
        let future: EventType = "session_teleported"
        #expect(!future.isKnown)
    }

    @Test("fault and config events carry their details")
    func faultAndConfigEvents() throws {
        let fault = try FleetJSON.decode(EventMessage.self, from: Data("""
            {"ts":"2025-03-01T10:00:00Z","epoch":7,"seq":14,"type":"fault_raised","fault":"overheat",
             "message":"motor at 71.0 °C"}
            """.utf8)).get()
        #expect(fault.fault == "overheat")
        let rejected = Event(type: .configRejected, configVersion: 5,
                             reasons: ["config.max_session_minutes: expected an integer 1–30, got 45"])
        #expect(try keys(rejected) == ["type", "config_version", "reasons"])
        try roundTrip(rejected)
    }

    @Test("usage: sessions started/completed/aborted by reason, seconds by zone/point/technique/program")
    func usage() throws {
        let literal = try FleetJSON.decode(UsageMessage.self, from: Data("""
            {"ts":"2025-03-01T10:00:00Z","epoch":7,"seq":3,
             "sessions":{"started":12,"completed":9,"aborted":{"pain_signal":2,"interrupted":1}},
             "seconds":{"by_zone":{"calf":1800,"shin":600},"by_point":{"sp6":900},
                        "by_technique":{"kneading":1500,"circular":900},"by_program":{"calf-release":2400}},
             "outbox_dropped":0}
            """.utf8)).get()
        #expect(literal.sessions == SessionCounts(started: 12, completed: 9, aborted: ["pain_signal": 2, "interrupted": 1]))
        #expect(literal.sessions.abortedTotal == 3)
        #expect(literal.seconds.byZone["calf"] == 1800)
        #expect(try keys(literal.body) == ["sessions", "seconds", "outbox_dropped"])
        #expect(try keys(literal.sessions) == ["started", "completed", "aborted"])
        #expect(try keys(literal.seconds) == ["by_zone", "by_point", "by_technique", "by_program"])
        try roundTrip(literal)
    }

    @Test("reported config: version, state, error, reasons")
    func reported() throws {
        let literal = try FleetJSON.decode(ReportedConfigMessage.self, from: Data("""
            {"ts":"2025-03-01T10:00:00Z","epoch":7,"seq":2,"version":5,"state":"rejected","applied_version":4,
             "error":"config.colour: unknown key","reasons":["config.colour: unknown key"]}
            """.utf8)).get()
        #expect(literal.body == ReportedConfig(version: 5, state: .rejected, appliedVersion: 4,
                                               error: "config.colour: unknown key",
                                               reasons: ["config.colour: unknown key"]))
        #expect(try keys(ReportedConfig(version: 5, state: .rolledBack, error: "self-check failed", reasons: []))
            == ["version", "state", "error", "reasons"])
        #expect(try JSONValue(encoding: ReportedConfig(version: 5, state: .rolledBack))["state"] == "rolled_back")
        try roundTrip(literal)
    }

    @Test("console state online/offline round-trips")
    func consoleState() throws {
        let state = try FleetJSON.decode(ConsoleState.self, from: Data(#"{"state":"offline"}"#.utf8)).get()
        #expect(state == ConsoleState(state: .offline))
        try roundTrip(ConsoleState(state: .online, ts: ts, instance: "console-a"))
    }

    @Test("commands: id, action, params, expires_at, reply_to")
    func command() throws {
        let command = Command(id: "c-1", request: .startSession(.program(try Identifier(validating: "calf-release"),
                                                                         intensity: 4)),
                              expiresAt: ts, replyTo: "massage/v1/_console/reply/console-a")
        let object = try JSONValue(encoding: command)
        #expect(object == [
            "id": "c-1", "action": "start_session", "params": ["program": "calf-release", "intensity": 4],
            "expires_at": "2025-03-01T10:00:00.250Z", "reply_to": "massage/v1/_console/reply/console-a",
        ])
        let data = try FleetJSON.encode(command)
        #expect(!String(decoding: data, as: UTF8.self).contains(#"\/"#), "slashes are not escaped")
        try roundTrip(command)
        #expect(try decodeCommand(data).get().command == command)
    }

    @Test("replies are {id, ok: true, result} or {id, ok: false, error: {code, message}}")
    func replies() throws {
        let ok = try CommandReply.success(id: "c-1", encoding: StartSessionResult(sessionID: "s-42", program: "calf-release",
                                                                                  durationSeconds: 600, intensity: 4))
        #expect(try JSONValue(encoding: ok) == [
            "id": "c-1", "ok": true,
            "result": ["session_id": "s-42", "program": "calf-release", "duration_s": 600, "intensity": 4],
        ])
        let failed = CommandReply.failure(id: nil, error: .badRequest("not valid JSON"))
        #expect(try JSONValue(encoding: failed) == [
            "id": nil, "ok": false, "error": ["code": "bad_request", "message": "not valid JSON"],
        ])
        let literal = try FleetJSON.decode(CommandReply.self, from: Data(
            #"{"id":"c-2","ok":false,"error":{"code":"busy","message":"session s-41 is running"}}"#.utf8)).get()
        #expect(literal.error == .busy("session s-41 is running"))
        #expect(!literal.ok)
        #expect(throws: ProtocolError.busy("session s-41 is running")) {
            try literal.decodeResult(StartSessionResult.self)
        }
        #expect(try ok.decodeResult(StartSessionResult.self).sessionID == "s-42")
        try roundTrip(ok)
        try roundTrip(failed)
    }

    @Test("desired config: {version, config} with the contract's keys")
    func desired() throws {
        let desired = DesiredConfig(version: 3, config: DeviceConfig(
            maxSessionMinutes: 20, telemetryIntervalSeconds: 1, usageIntervalSeconds: 60, defaultIntensity: 4,
            programs: [ProgramSpec(id: "calf-quick", name: "Quick calf", steps: [
                StepSpec(target: "calf", technique: "kneading", intensity: 4, durationSeconds: 120),
            ])],
            pressureCeilingMMHg: ["shin": 40], maxMotorTempC: 55))
        #expect(try keys(desired) == ["version", "config"])
        #expect(try keys(desired.config) == [
            "max_session_minutes", "telemetry_interval_s", "usage_interval_s", "default_intensity", "programs",
            "pressure_ceiling_mmhg", "max_motor_temp_c",
        ])
        #expect(try DesiredConfig.decode(FleetJSON.encode(desired)).get() == desired)
    }

    @Test("get_status and other results round-trip")
    func results() throws {
        try roundTrip(GetStatusResult(agentVersion: "1.0.0", epoch: 7, programs: ["knee-relief"], configVersion: 4,
                                      capabilities: [.schedule], sessionState: .idle,
                                      scheduled: [ScheduleEntry(scheduleID: "sch-1", at: ts, program: "knee-relief")]))
        try roundTrip(SessionControlResult(sessionID: "s-1", sessionState: .paused, intensity: 3))
        try roundTrip(CancelScheduledResult(scheduleID: "sch-1"))
        try roundTrip(ResyncResult(republished: ["status", "usage", "config/reported"]))
        try roundTrip(PingResult(epoch: 7))
        #expect(try keys(ScheduleEntry(scheduleID: "s", at: ts, program: "p")) == ["schedule_id", "at", "program"])
    }

    @Test("agent payloads decode by the kind of topic they arrive on")
    func agentPayloads() throws {
        let status = try FleetJSON.encode(Stamped(Status.offline(), envelope: .init(ts: ts, epoch: 1, seq: 4)))
        guard case .success(.status(let decoded)) = AgentPayload.decode(kind: .status, payload: status) else {
            Issue.record("status did not decode")
            return
        }
        #expect(decoded.envelope.seq == 4)
        #expect(AgentPayload.decode(kind: .status, payload: Data()) ==
            .failure(.badRequest("empty payload on status (a cleared retained message)")))
        if case .success = AgentPayload.decode(kind: .cmd, payload: status) { Issue.record("cmd is not an agent topic") }
        if case .success = AgentPayload.decode(kind: .events, payload: status) { Issue.record("a status is not an event") }
    }

    @Test("a malformed agent message is refused with a message naming the field")
    func malformedAgentMessages() {
        let head = #""ts":"2025-03-01T10:00:00Z","epoch":1,"seq":1"#
        #expect(FleetJSON.decode(EventMessage.self, from: Data("{\(head)}".utf8))
            == .failure(.badRequest("missing field \"type\"")))
        #expect(FleetJSON.decode(UsageMessage.self, from: Data(#"{\#(head),"sessions":{"started":"3","completed":0,"aborted":{}},"seconds":{"by_zone":{},"by_point":{},"by_technique":{},"by_program":{}},"outbox_dropped":0}"#.utf8))
            == .failure(.badRequest("sessions.started: expected an integer 0–9007199254740992 (2^53), got \"3\"")))
        #expect(FleetJSON.decode(TelemetryMessage.self, from: Data(#"{\#(head),"session_state":"idle","pressure_mmhg":{},"motor_temp_c":30,"faults":[],"interval_s":1,"breathing_bpm":6.5}"#.utf8))
            == .failure(.badRequest("breathing_bpm: expected an integer 1–60, got 6.5")))
    }

    @Test("no message body uses an envelope key")
    func noEnvelopeCollisions() throws {
        let bodies: [any Encodable] = [
            Status.online(agentVersion: "1", programs: [], configVersion: 1, capabilities: []),
            Telemetry(sessionState: .idle, sessionID: "s", program: "p",
                      step: CurrentStep(index: 0, target: "calf", zone: "calf", technique: "kneading", intensity: 1),
                      elapsedSeconds: 1, motorTempC: 1, breathingBPM: 6, intervalSeconds: 1),
            Event(type: .sessionStep, sessionID: "s", program: "p", reason: .shutdown, source: "remote",
                  commandID: "c", intensity: 1, elapsedSeconds: 1, stepIndex: 0, stepCount: 1, target: "t", zone: "z",
                  point: "p", technique: "t", durationSeconds: 1, scheduleID: "s", at: ts, error: .busy("b"),
                  fault: "f", message: "m", configVersion: 1, reasons: []),
            Usage(),
            ReportedConfig(version: 1, state: .applied, appliedVersion: 1, error: "e", reasons: []),
        ]
        for body in bodies {
            #expect(try keys(body).isDisjoint(with: Envelope.keys), "\(type(of: body))")
        }
    }
}
