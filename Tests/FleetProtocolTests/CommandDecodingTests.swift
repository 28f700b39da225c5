import Foundation
import MassageEngine
import Testing
@testable import FleetProtocol

@Suite("Command decoding")
struct CommandDecodingTests {
    func decode(_ json: String) -> Result<IncomingCommand, CommandRejection> { decodeCommand(Data(json.utf8)) }

    func rejection(_ json: String, sourceLocation: SourceLocation = #_sourceLocation) -> CommandRejection? {
        switch decode(json) {
        case .success(let c):
            Issue.record("expected a rejection, decoded \(c.request)", sourceLocation: sourceLocation)
            return nil
        case .failure(let r): return r
        }
    }

    func request(_ json: String, sourceLocation: SourceLocation = #_sourceLocation) -> CommandRequest? {
        switch decode(json) {
        case .success(let c): return c.request
        case .failure(let r):
            Issue.record("expected a command, got \(r)", sourceLocation: sourceLocation)
            return nil
        }
    }

    @Test("every action decodes into its typed request")
    func allActions() throws {
        let calf = try Identifier(validating: "calf-release")
        let at = try #require(RFC3339.date(from: "2025-03-01T10:00:00Z"))
        #expect(request(#"{"id":"1","action":"start_session","params":{"program":"calf-release"}}"#)
            == .startSession(.program(calf)))
        #expect(request(#"{"id":"1","action":"start_session","params":{"program":"calf-release","intensity":3}}"#)
            == .startSession(.program(calf, intensity: 3)))
        #expect(request("""
            {"id":"1","action":"start_session","params":{"steps":[
              {"target":"gb34","technique":"circular","intensity":3,"duration_s":60,"breathing_bpm":6},
              {"target":"calf","technique":"kneading","intensity":5,"duration_s":90}]}}
            """) == .startSession(.steps([
                StepSpec(target: "gb34", technique: "circular", intensity: 3, durationSeconds: 60, breathingBPM: 6),
                StepSpec(target: "calf", technique: "kneading", intensity: 5, durationSeconds: 90),
            ])))
        #expect(request(#"{"id":"1","action":"schedule_session","params":{"program":"calf-release","at":"2025-03-01T11:00:00+01:00"}}"#)
            == .scheduleSession(ScheduleSessionParams(session: .program(calf), at: at)))
        #expect(request(#"{"id":"1","action":"cancel_scheduled","params":{"schedule_id":"sch-9"}}"#)
            == .cancelScheduled(CancelScheduledParams(scheduleID: "sch-9")))
        #expect(request(#"{"id":"1","action":"stop_session"}"#) == .stopSession(SessionControlParams()))
        #expect(request(#"{"id":"1","action":"pause_session","params":{"session_id":"s-1"}}"#)
            == .pauseSession(SessionControlParams(sessionID: "s-1")))
        #expect(request(#"{"id":"1","action":"resume_session","params":{}}"#) == .resumeSession(SessionControlParams()))
        #expect(request(#"{"id":"1","action":"adjust_intensity","params":{"intensity":7}}"#)
            == .adjustIntensity(AdjustIntensityParams(intensity: 7)))
        #expect(request(#"{"id":"1","action":"get_status"}"#) == .getStatus)
        #expect(request(#"{"id":"1","action":"resync","params":null}"#) == .resync)
        #expect(request(#"{"id":"1","action":"ping","params":{}}"#) == .ping)
    }

    @Test("typed requests encode to commands that decode back to them")
    func requestRoundTrip() throws {
        let requests: [CommandRequest] = [
            .startSession(.program(try Identifier(validating: "knee-relief"), intensity: 2)),
            .startSession(.steps([StepSpec(target: "kI1".lowercased(), technique: "tapping", intensity: 2, durationSeconds: 30)])),
            .scheduleSession(ScheduleSessionParams(session: .program(try Identifier(validating: "a")),
                                                   at: Date(timeIntervalSince1970: 1_800_000_000.5))),
            .cancelScheduled(.init(scheduleID: "x")), .stopSession(.init(sessionID: "s")), .pauseSession(.init()),
            .resumeSession(.init()), .adjustIntensity(.init(intensity: 10, sessionID: "s")), .getStatus, .resync, .ping,
        ]
        for (index, original) in requests.enumerated() {
            let data = try FleetJSON.encode(Command(id: "c-\(index)", request: original))
            #expect(try decodeCommand(data).get().request == original)
        }
    }

    @Test("not JSON is bad_request with no id")
    func notJSON() throws {
        let r = try #require(rejection("start the calf program please"))
        #expect(r.error.code == .badRequest)
        #expect(r.error.message.hasPrefix("not valid JSON"))
        #expect(r.id == nil)
        #expect(r.reply == .failure(id: nil, error: r.error))
        for text in ["", "{", "[]", "42", "\"id\"", "null", #"{"id":"1","action":"ping""#] {
            #expect(rejection(text)?.error.code == .badRequest, "\(text)")
        }
        #expect(rejection("[1,2]")?.error.message == "expected a JSON object, got an array")
    }

    @Test("binary payloads are bad_request: not UTF-8")
    func binary() {
        let bytes: [UInt8] = [0xFF, 0xFE, 0x00, 0x7B, 0x22, 0xC3, 0x28]
        guard case .failure(let r) = decodeCommand(bytes) else {
            Issue.record("binary decoded")
            return
        }
        #expect(r.error == .badRequest("payload is not UTF-8 text: expected a JSON object"))
    }

    @Test("a payload over 256 KiB is bad_request naming the limit, unparsed")
    func huge() {
        let padding = String(repeating: "x", count: ProtocolLimits.maxPayloadBytes)
        let r = rejection(#"{"id":"big","action":"ping","params":{"pad":"\#(padding)"}}"#)
        #expect(r?.error.code == .badRequest)
        #expect(r?.error.message.contains("the limit is 262144 bytes (256 KiB)") == true)
        #expect(r?.id == nil)
        // Just under the limit is parsed (and refused for its unknown param, with its id).
        let under = String(repeating: "x", count: ProtocolLimits.maxPayloadBytes - 100)
        let parsed = rejection(#"{"id":"big","action":"ping","params":{"pad":"\#(under)"}}"#)
        #expect(parsed?.error == .invalidParams("params.pad: unknown field; ping takes no params"))
        #expect(parsed?.id == "big")
    }

    @Test("deep nesting is refused before parsing")
    func deepNesting() {
        let deep = #"{"id":"d","action":"ping","params":{"x":"# + String(repeating: "[", count: 100_000)
        let r = rejection(deep)
        #expect(r?.error.code == .badRequest)
        #expect(r?.error.message.contains("more than 32 levels deep") == true)
        // Brackets inside strings do not count.
        #expect(rejection(#"{"id":"d","action":"ping","params":{"x":"\#(String(repeating: "[", count: 100))"}}"#)?.error
            == .invalidParams("params.x: unknown field; ping takes no params"))
    }

    @Test("missing or malformed id is bad_request")
    func missingID() {
        #expect(rejection(#"{"action":"ping"}"#)?.error == .badRequest("missing field \"id\""))
        #expect(rejection(#"{"id":42,"action":"ping"}"#)?.error
            == .badRequest("id: expected a non-empty string of at most 128 bytes, got 42"))
        #expect(rejection(#"{"id":"","action":"ping"}"#)?.error.code == .badRequest)
        let long = String(repeating: "i", count: 129)
        #expect(rejection(#"{"id":"\#(long)","action":"ping"}"#)?.id == nil)
    }

    @Test("missing action is bad_request and keeps the id")
    func missingAction() {
        let r = rejection(#"{"id":"c-7","params":{}}"#)
        #expect(r?.error == .badRequest("missing field \"action\""))
        #expect(r?.id == "c-7")
        #expect(rejection(#"{"id":"c-7","action":7}"#)?.error == .badRequest("action: expected a string, got 7"))
    }

    @Test("an unknown action is unknown_action listing the known ones")
    func unknownAction() {
        let r = rejection(#"{"id":"c-8","action":"dance"}"#)
        #expect(r?.error.code == .unknownAction)
        #expect(r?.error.message == "unknown action \"dance\"; known: start_session, schedule_session, cancel_scheduled, stop_session, pause_session, resume_session, adjust_intensity, get_status, resync, ping, clear_fault")
        #expect(r?.id == "c-8")
    }

    @Test("an unknown top-level field is bad_request naming it")
    func unknownField() {
        #expect(rejection(#"{"id":"c","action":"ping","expire_at":"2025-03-01T10:00:00Z"}"#)?.error
            == .badRequest("unknown field \"expire_at\"; a command has id, action, params, expires_at, reply_to"))
    }

    @Test("wrong param types are invalid_params naming the field and what was expected")
    func wrongParamTypes() {
        #expect(rejection(#"{"id":"c","action":"adjust_intensity","params":{"intensity":"high"}}"#)?.error
            == .invalidParams("params.intensity: expected an integer 1–10, got \"high\""))
        #expect(rejection(#"{"id":"c","action":"adjust_intensity","params":{"intensity":11}}"#)?.error
            == .invalidParams("params.intensity: expected an integer 1–10, got 11"))
        #expect(rejection(#"{"id":"c","action":"adjust_intensity","params":{"intensity":2.5}}"#)?.error
            == .invalidParams("params.intensity: expected an integer 1–10, got 2.5"))
        #expect(rejection(#"{"id":"c","action":"adjust_intensity","params":{"intensity":null}}"#)?.error
            == .invalidParams("params.intensity: expected an integer 1–10, got null"))
        #expect(rejection(#"{"id":"c","action":"adjust_intensity","params":{}}"#)?.error
            == .invalidParams("params: missing field \"intensity\""))
        #expect(rejection(#"{"id":"c","action":"start_session","params":{"program":"Calf Release"}}"#)?.error
            == .invalidParams("params.program: expected a program id matching [a-z0-9][a-z0-9_-]{0,62}, got \"Calf Release\""))
        #expect(rejection(#"{"id":"c","action":"start_session","params":{"program":"calf","intensity":"max"}}"#)?.error
            == .invalidParams("params.intensity: expected an integer 1–10, got \"max\""))
        #expect(rejection(#"{"id":"c","action":"cancel_scheduled","params":{"schedule_id":5}}"#)?.error
            == .invalidParams("params.schedule_id: expected a schedule id (a non-empty string of at most 128 bytes), got 5"))
        #expect(rejection(#"{"id":"c","action":"ping","params":[1]}"#)?.error
            == .invalidParams("params: expected an object, got an array"))
        #expect(rejection(#"{"id":"c","action":"start_session","params":{"program":"calf","intensty":3}}"#)?.error
            == .invalidParams("params.intensty: unknown field; start_session takes program, steps, intensity"))
    }

    @Test("custom steps are checked field by field, naming the step")
    func stepErrors() {
        let r = rejection("""
            {"id":"c","action":"start_session","params":{"steps":[
              {"target":"calf","technique":"kneading","intensity":"high","duration_s":60},
              {"target":"calf","technique":"kneading","intensity":3}]}}
            """)
        #expect(r?.error.code == .invalidParams)
        #expect(r?.error.message == "params.steps[0].intensity: expected an integer 1–10, got \"high\"; params.steps[1]: missing field \"duration_s\"")
        #expect(rejection(#"{"id":"c","action":"start_session","params":{"steps":[]}}"#)?.error
            == .invalidParams("params.steps: expected at least one step, got an empty array"))
        #expect(rejection(#"{"id":"c","action":"start_session","params":{"steps":{"target":"calf"}}}"#)?.error
            == .invalidParams("params.steps: expected an array of steps, got an object"))
        #expect(rejection(#"{"id":"c","action":"start_session","params":{"steps":[{"target":"calf","technique":"kneading","intensity":3,"duration_s":60,"pressure":99}]}}"#)?.error
            == .invalidParams("params.steps[0].pressure: unknown key; a step has breathing_bpm, duration_s, intensity, target, technique"))
    }

    @Test("program and steps together, or neither, is invalid_params")
    func programXorSteps() {
        #expect(rejection(#"{"id":"c","action":"start_session","params":{"program":"calf","steps":[]}}"#)?.error
            == .invalidParams("params: give either \"program\" or \"steps\", not both"))
        #expect(rejection(#"{"id":"c","action":"start_session","params":{"intensity":3}}"#)?.error
            == .invalidParams("params: missing field \"program\" (a program id) or \"steps\" (custom steps)"))
        #expect(rejection(#"{"id":"c","action":"schedule_session","params":{"at":"2025-03-01T10:00:00Z"}}"#)?.error.code
            == .invalidParams)
    }

    @Test("a malformed expires_at is bad_request; a malformed schedule time is invalid_params")
    func badTimes() {
        let r = rejection(#"{"id":"c","action":"ping","expires_at":"tomorrow"}"#)
        #expect(r?.error == .badRequest("expires_at: expected an RFC 3339 date-time such as 2025-03-01T10:00:00.000Z, got \"tomorrow\""))
        #expect(r?.id == "c")
        #expect(rejection(#"{"id":"c","action":"ping","expires_at":1740823200}"#)?.error.code == .badRequest)
        #expect(rejection(#"{"id":"c","action":"ping","expires_at":"2025-03-01T10:00:00"}"#)?.error.code == .badRequest)
        #expect(rejection(#"{"id":"c","action":"schedule_session","params":{"program":"calf","at":"soon"}}"#)?.error
            == .invalidParams("params.at: expected an RFC 3339 date-time such as 2025-03-01T10:00:00.000Z, got \"soon\""))
        #expect(rejection(#"{"id":"c","action":"schedule_session","params":{"program":"calf"}}"#)?.error
            == .invalidParams("params: missing field \"at\""))
    }

    @Test("expiry is judged against the agent's clock")
    func expiry() throws {
        let command = try decode(#"{"id":"c","action":"ping","expires_at":"2025-03-01T10:00:00Z"}"#).get().command
        let expiresAt = try #require(command.expiresAt)
        #expect(command.expiryError(now: expiresAt.addingTimeInterval(-1)) == nil)
        #expect(command.expiryError(now: expiresAt.addingTimeInterval(1))
            == ProtocolError(code: .expired, message: "command expired at 2025-03-01T10:00:00.000Z; received at 2025-03-01T10:00:01.000Z"))
        #expect(try decode(#"{"id":"c","action":"ping"}"#).get().command.isExpired(now: .distantFuture) == false)
    }

    @Test("reply_to is read, validated and salvaged for error replies")
    func replyTo() throws {
        #expect(try decode(#"{"id":"c","action":"ping","reply_to":"clients/x/replies"}"#).get().command.replyTo
            == "clients/x/replies")
        #expect(rejection(#"{"id":"c","action":"ping","reply_to":"clients/+/replies"}"#)?.error.code == .badRequest)
        let r = rejection(#"{"id":"c","action":"dance","reply_to":"clients/x/replies"}"#)
        #expect(r?.replyTo == "clients/x/replies")
        #expect(r?.id == "c")
    }

    @Test("Command's Decodable conformance applies the same rules")
    func decodableConformance() {
        #expect(throws: CommandRejection.self) {
            try FleetJSON.makeDecoder().decode(Command.self, from: Data(#"{"action":"ping"}"#.utf8))
        }
        #expect(throws: Never.self) {
            try FleetJSON.makeDecoder().decode(Command.self, from: Data(#"{"id":"c","action":"ping"}"#.utf8))
        }
    }
}

@Suite("Readable decoding errors")
struct ReadableDecodingErrorTests {
    struct Inner: Decodable { var count: Int; var name: String }
    struct Outer: Decodable { var items: [Inner]; var flag: Bool }

    func message(_ json: String, prefix: String? = nil) -> String? {
        let data = Data(json.utf8)
        do {
            _ = try FleetJSON.makeDecoder().decode(Outer.self, from: data)
            return nil
        } catch let error as DecodingError {
            return error.readableMessage(root: try? FleetJSON.makeDecoder().decode(JSONValue.self, from: data), prefix: prefix)
        } catch {
            return "\(error)"
        }
    }

    @Test("Swift decoding errors become dotted paths with expected and found values")
    func paths() {
        #expect(message(#"{"items":[{"count":1,"name":"a"},{"count":"two","name":"b"}],"flag":true}"#)
            == "items[1].count: expected an integer, got \"two\"")
        #expect(message(#"{"items":[{"count":1}],"flag":true}"#) == "items[0]: missing field \"name\"")
        #expect(message(#"{"items":[],"flag":null}"#) == "flag: expected true or false, got null")
        #expect(message(#"{"items":{},"flag":true}"#, prefix: "params") == "params.items: expected an array, got an object")
        #expect(message(#"{"flag":true}"#) == "missing field \"items\"")
        #expect(message(#"{"items":[{"count":1.5,"name":"a"}],"flag":true}"#)
            == "a number does not fit its field (expected an integer in range): check items[0].count = 1.5")
    }
}

@Suite("Free-form JSON values")
struct JSONValueTests {
    @Test("every kind of JSON value decodes to its own case, integers exactly")
    func kinds() throws {
        let json = #"""
            {"s": "text", "t": true, "f": false, "i": 42, "neg": -7, "big": 9007199254740993,
             "d": 1.5, "e": 1e300, "n": null, "a": [1, "x", [], {}], "o": {"k": {"deep": [false]}}}
            """#
        guard case .success(let value) = FleetJSON.parse(Array(json.utf8)) else {
            Issue.record("valid JSON was refused")
            return
        }
        let expected: JSONValue = .object([
            "s": .string("text"), "t": .bool(true), "f": .bool(false), "i": .integer(42), "neg": .integer(-7),
            "big": .integer(9_007_199_254_740_993), "d": .number(1.5), "e": .number(1e300), "n": .null,
            "a": .array([.integer(1), .string("x"), .array([]), .object([:])]),
            "o": .object(["k": .object(["deep": .array([.bool(false)])])]),
        ])
        #expect(value == expected)
        // Integers above 2^53 would lose their last digit as a Double.
        if case .object(let fields) = value, case .integer(let big) = fields["big"] {
            #expect(big == 9_007_199_254_740_993)
        } else {
            Issue.record("\"big\" did not decode as an exact integer")
        }
        for scalar in ["\"x\"", "true", "3", "2.5", "null", "[]"] {
            #expect((try? FleetJSON.parse(Array(scalar.utf8)).get()) != nil, "a top-level \(scalar) is JSON too")
        }
    }
}

@Suite("Command decoding: the well-formed fast path")
struct WellFormedCommandTests {
    /// The envelope as it was always decoded: the free-form tree, then `Command.validate`.
    func throughTheTree(_ bytes: [UInt8]) -> Result<IncomingCommand, CommandRejection> {
        switch validatedCommand(bytes) {
        case .failure(let rejection): return .failure(rejection)
        case .success(let command):
            do { return .success(IncomingCommand(command: command, request: try command.request())) } catch {
                return .failure(CommandRejection(error, id: command.id, replyTo: command.replyTo))
            }
        }
    }

    static let variants: [String] = [
        #"{"id":"a","action":"ping"}"#,
        #"{"id":"a","action":"ping","params":{}}"#,
        #"{"id":"a","action":"ping","params":null}"#,
        #"{"id":"a","action":"ping","params":{"x":1}}"#,
        #"{"id":"a","action":"ping","params":[]}"#,
        #"{"id":"a","action":"ping","params":"{}"}"#,
        #"{"id":"a","action":"ping","expires_at":null,"reply_to":null}"#,
        #"{"id":"a","action":"ping","expires_at":"2030-01-01T00:00:00Z","reply_to":"console/replies/1"}"#,
        #"{"id":"a","action":"ping","expires_at":"2030-01-01T00:00:00.123456+02:00"}"#,
        #"{"id":"a","action":"ping","expires_at":"2030-13-01T00:00:00Z"}"#,
        #"{"id":"a","action":"ping","expires_at":1893456000}"#,
        #"{"id":"a","action":"ping","reply_to":"replies/#"}"#,
        #"{"id":"a","action":"ping","reply_to":"$SYS/x"}"#,
        #"{"id":"a","action":"ping","reply_to":5}"#,
        #"{"id":"a","action":"ping","extra":true}"#,
        #"{"id":"","action":"ping"}"#,
        #"{"id":5,"action":"ping"}"#,
        #"{"id":null,"action":"ping"}"#,
        #"{"action":"ping"}"#,
        #"{"id":"a"}"#,
        #"{"id":"a","action":"dance"}"#,
        #"{"id":"a","action":7}"#,
        #"{"id":"a","action":"ping","id":"b"}"#,
        #"{"id":"\#(String(repeating: "x", count: 128))","action":"ping"}"#,
        #"{"id":"\#(String(repeating: "x", count: 129))","action":"ping"}"#,
        #"{"id":"a","action":"start_session","params":{"program":"calf-release","intensity":3}}"#,
        #"{"id":"a","action":"start_session","params":{"program":"calf-release","intensity":"3"}}"#,
        #"{"id":"a","action":"start_session","params":{"steps":[{"zone":"calf","technique":"kneading","intensity":4,"duration_s":30}]}}"#,
        #"{"id":"a","action":"schedule_session","params":{"at":"2030-01-01T08:00:00Z","program":"calf-release"}}"#,
        #"{"id":"a","action":"adjust_intensity","params":{"intensity":12}}"#,
        #"{"id":"a","action":"stop_session","params":{"session_id":"s-1"}}"#,
        #"[{"id":"a","action":"ping"}]"#,
        #""ping""#,
        #"null"#,
        #"{}"#,
    ]

    @Test("accepts exactly what the tree and Command.validate accept, and decodes the same command; refusals are the tree's")
    func sameAsTheTree() throws {
        var inputs = Self.variants.map { Array($0.utf8) }
        inputs += try CommandFuzzCorpusTests.files().map { Array(try Data(contentsOf: $0)) }
        var fast = 0
        for bytes in inputs {
            let text = String(decoding: bytes, as: UTF8.self)
            let tree = throughTheTree(bytes)
            #expect(decodeCommand(bytes) == tree, "\(text)")
            let wellFormed = try? FleetJSON.sharedDecoder.decode(WellFormedCommand.self, from: Data(bytes))
            let validated = try? validatedCommand(bytes).get()
            #expect(wellFormed?.command == validated, "the fast path and validate differ on \(text)")
            if wellFormed != nil { fast += 1 }
        }
        #expect(fast >= 20, "the fast path took \(fast) of \(inputs.count) inputs")
    }
}

@Suite("Replies encoded from typed results")
struct OutgoingReplyTests {
    func viaTree(_ id: String?, _ result: some Encodable & Sendable) throws -> CommandReply {
        try CommandReply.success(id: id, encoding: result)
    }

    func direct(_ reply: OutgoingReply) throws -> CommandReply {
        try FleetJSON.decode(CommandReply.self, from: Array(try FleetJSON.encode(reply))).get()
    }

    @Test("a reply encoded straight from its result reads back as the reply built through the JSON tree")
    func sameAsTheTree() throws {
        let at = Date(timeIntervalSince1970: 1_900_000_000.123)
        let entry = ScheduleEntry(scheduleID: "sch-1", at: at, program: "calf-release")
        let results: [any Encodable & Sendable] = [
            PingResult(epoch: 7),
            StartSessionResult(sessionID: "s-1", program: "calf-release", durationSeconds: 600, intensity: 4),
            SessionControlResult(sessionID: "s-1", sessionState: .paused),
            SessionControlResult(sessionID: "s-1", sessionState: .running, intensity: 3),
            CancelScheduledResult(scheduleID: "sch-1"),
            ResyncResult(republished: ["status", "usage"]),
            GetStatusResult(agentVersion: "1.2.3", epoch: 9, programs: ["calf-release"], configVersion: 4,
                            capabilities: [.customSteps], sessionState: .idle, scheduled: [entry]),
            JSONValue.object(["schedule_id": .string("sch-1"), "duration_s": .number(600), "at": .string("2030-03-17T17:46:40.123Z")]),
        ]
        for result in results {
            let expected = try viaTree("c-1", result)
            #expect(try direct(.success(id: "c-1", result: result)) == expected, "\(type(of: result))")
        }
        let error = ProtocolError.busy("a session runs")
        #expect(try direct(.failure(id: "c-2", error: error)) == .failure(id: "c-2", error: error))
        #expect(try direct(.failure(id: nil, error: error)) == .failure(id: nil, error: error))
    }
}
