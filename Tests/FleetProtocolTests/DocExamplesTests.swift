import Foundation
import Testing
@testable import FleetProtocol

/// Every JSON example in docs/protocol.md is marked `<!-- example: kind -->`
/// and decoded here with the real types, so the reference cannot drift
/// from the code.
@Suite("docs/protocol.md examples")
struct DocExamplesTests {
    struct Example {
        var kind: String
        var json: String
        var line: Int
    }

    static func examples() throws -> (marked: [Example], unmarkedJSONBlocks: [Int]) {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/protocol.md"), encoding: .utf8)
        let lines = text.components(separatedBy: "\n")
        var examples: [Example] = []
        var unmarked: [Int] = []
        var index = 0
        while index < lines.count {
            if lines[index].hasPrefix("```json") {
                let previous = index > 0 ? lines[index - 1] : ""
                var body: [String] = []
                var end = index + 1
                while end < lines.count, !lines[end].hasPrefix("```") {
                    body.append(lines[end])
                    end += 1
                }
                if previous.hasPrefix("<!-- example: "), previous.hasSuffix(" -->") {
                    let kind = String(previous.dropFirst("<!-- example: ".count).dropLast(" -->".count))
                    examples.append(Example(kind: kind, json: body.joined(separator: "\n"), line: index + 1))
                } else {
                    unmarked.append(index + 1)
                }
                index = end
            }
            index += 1
        }
        return (examples, unmarked)
    }

    @Test("every JSON block in the reference is a checked example")
    func allMarked() throws {
        let (examples, unmarked) = try Self.examples()
        #expect(unmarked.isEmpty, "unmarked ```json blocks at lines \(unmarked)")
        #expect(examples.count > 30)
    }

    @Test("every example decodes as the type its marker names")
    func decodeAll() throws {
        for example in try Self.examples().marked {
            let bytes = Data(example.json.utf8)
            let where_ = "docs/protocol.md:\(example.line) (\(example.kind))"
            switch example.kind {
            case "status": #expect(throws: Never.self, "\(where_)") { try FleetJSON.decode(StatusMessage.self, from: bytes).get() }
            case "telemetry": #expect(throws: Never.self, "\(where_)") { try FleetJSON.decode(TelemetryMessage.self, from: bytes).get() }
            case "event": #expect(throws: Never.self, "\(where_)") { try FleetJSON.decode(EventMessage.self, from: bytes).get() }
            case "usage": #expect(throws: Never.self, "\(where_)") { try FleetJSON.decode(UsageMessage.self, from: bytes).get() }
            case "reported": #expect(throws: Never.self, "\(where_)") { try FleetJSON.decode(ReportedConfigMessage.self, from: bytes).get() }
            case "desired": #expect(throws: Never.self, "\(where_)") { try DesiredConfig.decode(bytes).get() }
            case "command": #expect(throws: Never.self, "\(where_)") { try decodeCommand(bytes).get() }
            case "reply": #expect(throws: Never.self, "\(where_)") { try FleetJSON.decode(CommandReply.self, from: bytes).get() }
            case "console": #expect(throws: Never.self, "\(where_)") { try FleetJSON.decode(ConsoleState.self, from: bytes).get() }
            default: Issue.record("unknown example kind at \(where_)")
            }
        }
    }

    @Test("the examples cover every event type and every action")
    func coverage() throws {
        let examples = try Self.examples().marked
        let types = Set(examples.filter { $0.kind == "event" }.compactMap {
            try? FleetJSON.decode(EventMessage.self, from: Data($0.json.utf8)).get().type
        })
        #expect(Set(EventType.known).subtracting(types).isEmpty, "missing \(Set(EventType.known).subtracting(types))")
        let actions = Set(examples.filter { $0.kind == "command" }.compactMap {
            try? decodeCommand(Data($0.json.utf8)).get().command.action
        })
        #expect(Set(Action.known).subtracting(actions).isEmpty, "missing \(Set(Action.known).subtracting(actions))")
    }

    @Test("the documented not-JSON reply is what decodeCommand produces")
    func notJSONMessage() throws {
        guard case .failure(let rejection) = decodeCommand(Data("start the calf program please".utf8)) else {
            Issue.record("decoded")
            return
        }
        let documented = try Self.examples().marked.filter { $0.kind == "reply" }.compactMap {
            try? FleetJSON.decode(CommandReply.self, from: Data($0.json.utf8)).get()
        }
        #expect(documented.contains(rejection.reply), "\(rejection.reply)")
    }
}
