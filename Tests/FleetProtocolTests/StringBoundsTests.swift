import FleetProtocol
import Foundation
import Testing

/// Issue 20, item 5: strings a device sends are bounded when they are
/// decoded (docs/protocol.md, "Limits"). A name (id, program, zone, fault,
/// vocabulary value, map key) longer than 128 bytes makes the message
/// malformed; free text (a message, a reason) is cut to 4,096 bytes and
/// kept; lists and maps hold at most 1,000 items.
@Suite("Bounds of the strings in agent messages")
struct StringBoundsTests {
    static let e = NumberBoundsTests.envelope()
    static let longest = String(repeating: "n", count: ProtocolLimits.maxNameBytes)
    static let tooLong = longest + "n"

    static func telemetry(_ fields: String = "", faults: String = "[]", pressure: String = "{}") -> String {
        #"{"session_state":"running","pressure_mmhg":\#(pressure),"motor_temp_c":30,"faults":\#(faults),"interval_s":1\#(fields),\#(e)}"#
    }

    @Test("a name of 128 bytes is accepted and one of 129 refused, naming the field, wherever names are")
    func names() {
        let cases: [(DeviceTopicKind, (String) -> String, String)] = [
            (.telemetry, { Self.telemetry(#","session_id":"\#($0)""#) }, "session_id"),
            (.telemetry, { Self.telemetry(#","program":"\#($0)""#) }, "program"),
            (.telemetry, { Self.telemetry(#","step":{"index":0,"target":"\#($0)","zone":"calf","technique":"kneading","intensity":3}"#) }, "step.target"),
            (.telemetry, { Self.telemetry(faults: #"["\#($0)"]"#) }, "faults"),
            (.events, { #"{"type":"fault_raised","fault":"\#($0)",\#(Self.e)}"# }, "fault"),
            (.events, { #"{"type":"session_started","session_id":"\#($0)","program":"p",\#(Self.e)}"# }, "session_id"),
            (.events, { #"{"type":"\#($0)",\#(Self.e)}"# }, "type"),
            (.status, { #"{"state":"online","agent_version":"\#($0)","programs":[],"capabilities":[],"config_version":0,\#(Self.e)}"# }, "agent_version"),
            (.status, { #"{"state":"online","agent_version":"1","programs":["\#($0)"],"capabilities":[],"config_version":0,\#(Self.e)}"# }, "programs"),
            (.status, { #"{"state":"online","agent_version":"1","programs":[],"capabilities":["\#($0)"],"config_version":0,\#(Self.e)}"# }, "capabilities"),
        ]
        for (kind, json, path) in cases {
            #expect(NumberBoundsTests.refusal(kind, json(Self.longest)) == nil, "\(path) of 128 bytes: \(NumberBoundsTests.refusal(kind, json(Self.longest)) ?? "")")
            let message = NumberBoundsTests.refusal(kind, json(Self.tooLong))
            #expect(message?.hasPrefix(path) == true && message?.contains("at most 128 bytes") == true, "\(path) of 129 bytes: \(message ?? "accepted")")
        }
    }

    @Test("a map key past 128 bytes, or a map or list past 1,000 items, makes the message malformed")
    func mapsAndLists() {
        let longKey = NumberBoundsTests.refusal(.telemetry, Self.telemetry(pressure: #"{"\#(Self.tooLong)":40}"#))
        #expect(longKey?.hasPrefix("pressure_mmhg") == true && longKey?.contains("128 bytes") == true, "\(longKey ?? "accepted")")
        let entries = (0...1000).map { #""z\#($0)":1"# }.joined(separator: ",")
        let wide = NumberBoundsTests.refusal(.telemetry, Self.telemetry(pressure: "{\(entries)}"))
        #expect(wide?.hasPrefix("pressure_mmhg") == true && wide?.contains("1000 entries") == true, "\(wide ?? "accepted")")
        let faults = "[" + (0...1000).map { #""f\#($0)""# }.joined(separator: ",") + "]"
        let long = NumberBoundsTests.refusal(.telemetry, Self.telemetry(faults: faults))
        #expect(long?.hasPrefix("faults") == true && long?.contains("1000 strings") == true, "\(long ?? "accepted")")
        let thousand = "[" + (1...1000).map { #""f\#($0)""# }.joined(separator: ",") + "]"
        #expect(NumberBoundsTests.refusal(.telemetry, Self.telemetry(faults: thousand)) == nil)
    }

    @Test("free text past 4,096 bytes is kept, cut at a character boundary and marked with …")
    func text() throws {
        let long = String(repeating: "é", count: 5000) // 2 bytes each
        guard case .success(.event(let event)) = NumberBoundsTests.decode(.events, #"{"type":"fault_raised","fault":"overheat","message":"\#(long)",\#(Self.e)}"#) else {
            Issue.record("a long message refused")
            return
        }
        let message = try #require(event.body.message)
        #expect(message.utf8.count <= ProtocolLimits.maxTextBytes && message.hasSuffix("…") && message.hasPrefix("éé"))
        #expect(message.dropLast().allSatisfy { $0 == "é" })
        guard case .success(.reportedConfig(let report)) = NumberBoundsTests.decode(
            .configReported, #"{"version":2,"state":"rejected","error":"\#(long)","reasons":["\#(long)","short"],\#(Self.e)}"#)
        else {
            Issue.record("a long rejection refused")
            return
        }
        #expect(report.body.error?.utf8.count ?? .max <= ProtocolLimits.maxTextBytes)
        #expect(report.body.reasons?.first?.hasSuffix("…") == true && report.body.reasons?.last == "short")
        // Text under the bound is untouched.
        #expect(ProtocolLimits.boundedText("motor at 71.5 °C") == "motor at 71.5 °C")
    }

    @Test("a command reply's error message is cut the same way, its id bounded like a command's")
    func replies() {
        let long = String(repeating: "x", count: 10_000)
        guard case .success(let reply) = FleetJSON.decode(CommandReply.self, from: Array(#"{"id":"c1","ok":false,"error":{"code":"busy","message":"\#(long)"}}"#.utf8)),
              case .failure(let error) = reply.outcome
        else {
            Issue.record("the reply was refused")
            return
        }
        #expect(error.code == .busy && error.message.utf8.count <= ProtocolLimits.maxTextBytes)
        let longID = String(repeating: "i", count: ProtocolLimits.maxIDBytes + 1)
        guard case .failure(let refused) = FleetJSON.decode(CommandReply.self, from: Array(#"{"id":"\#(longID)","ok":true}"#.utf8)) else {
            Issue.record("a reply with an over-long id was accepted")
            return
        }
        #expect(refused.message.hasPrefix("id"))
    }
}
