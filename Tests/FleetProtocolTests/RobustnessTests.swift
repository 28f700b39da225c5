import Foundation
import Testing
@testable import FleetProtocol
import FleetTestKit

@Suite("Robustness against arbitrary payloads")
struct RobustnessTests {
    static let fragments: [String] = [
        "{", "}", "[", "]", ",", ":", "\"", "\\", "\"id\"", "\"action\"", "\"params\"", "\"start_session\"",
        "\"steps\"", "\"program\"", "\"intensity\"", "\"expires_at\"", "\"reply_to\"", "\"2025-03-01T10:00:00Z\"",
        "null", "true", "false", "0", "-1", "1e400", "9223372036854775808", "2.5", "\"\\u0000\"", "\"\\ud800\"",
        "\"x\"", " ", "\u{7F}", "é", "\"version\"", "\"config\"", "\"programs\"", "\"duration_s\"",
    ]

    /// Random bytes, and random sequences of JSON-ish fragments (which reach
    /// much deeper into the decoders than random bytes do).
    static func payload(_ rng: inout SeededGenerator) -> [UInt8] {
        if Bool.random(using: &rng) {
            let count = Int.random(in: 0...300, using: &rng)
            return (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
        }
        let count = Int.random(in: 1...60, using: &rng)
        return Array((0..<count).map { _ in fragments.randomElement(using: &rng)! }.joined().utf8)
    }

    @Test("thousands of random payloads never trap any decoder")
    func randomPayloads() {
        var rng = SeededGenerator(seed: 0x5EED_2025)
        var rejected = 0
        for _ in 0..<5_000 {
            let bytes = Self.payload(&rng)
            if case .failure(let r) = decodeCommand(bytes) {
                rejected += 1
                #expect(ErrorCode.known.contains(r.error.code))
                #expect(!r.error.message.isEmpty)
            }
            _ = DesiredConfig.decode(bytes)
            for kind in DeviceTopicKind.allCases { _ = AgentPayload.decode(kind: kind, payload: bytes) }
            _ = FleetJSON.decode(ConsoleState.self, from: bytes)
            _ = FleetJSON.decode(CommandReply.self, from: bytes)
            if let text = String(bytes: bytes, encoding: .utf8) {
                _ = TopicRoot.default.parse(text)
                _ = RFC3339.date(from: text)
            }
        }
        #expect(rejected > 4_900, "almost every random payload is refused")
    }

    @Test("mutations of a valid command never trap and keep the id when they can")
    func mutatedCommands() {
        let valid = Array(#"{"id":"c-1","action":"start_session","params":{"steps":[{"target":"calf","technique":"kneading","intensity":3,"duration_s":60}],"intensity":4},"expires_at":"2025-03-01T10:00:00Z"}"#.utf8)
        var rng = SeededGenerator(seed: 42)
        var decoded = 0
        for _ in 0..<3_000 {
            var bytes = valid
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let index = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: bytes[index] = UInt8.random(in: 0...255, using: &rng)
                case 1: bytes.remove(at: index)
                default: bytes.insert(UInt8.random(in: 0...255, using: &rng), at: index)
                }
            }
            switch decodeCommand(bytes) {
            case .success: decoded += 1
            case .failure(let r): #expect(!r.error.message.isEmpty)
            }
        }
        #expect(decoded < 3_000)
    }

    @Test("random Unicode topics never trap the parser")
    func randomTopics() {
        var rng = SeededGenerator(seed: 7)
        let pieces = ["massage", "v1", "/", "+", "#", "_console", "state", "status", "config", "desired", "a", "B", "", "é", "$"]
        for _ in 0..<3_000 {
            let topic = (0..<Int.random(in: 0...8, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
            if case .device(let address, let kind)? = TopicRoot.default.parse(topic) {
                #expect(TopicRoot.default.topic(kind, for: address) == topic)
            }
        }
    }
}
