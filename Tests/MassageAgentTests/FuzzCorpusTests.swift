import FleetTestSupport
import FleetProtocol
import FleetSettings
import Foundation
import MassageAgent
import MassageEngine
import Testing

/// The fuzz seed corpus (Tests/Fuzz/Corpus) of the agent's two inputs,
/// replayed in the ordinary test run: `valid-*` files are accepted,
/// `invalid-*` refused with reasons, anything else (an input that once
/// crashed a fuzz target) must simply not trap.
@Suite("Fuzz corpus: agent config and desired config")
struct AgentFuzzCorpusTests {
    static let repository = AgentProcess.repositoryRoot

    static func files(_ target: String) throws -> [URL] {
        try FileManager.default.contentsOfDirectory(at: repository.appendingPathComponent("Tests/Fuzz/Corpus/\(target)"),
                                                    includingPropertiesForKeys: nil)
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    /// Config/agent.yaml and the built-in programs, as the agent loads them.
    static func shippedDevice() throws -> (AgentConfiguration, ProgramLibrary) {
        let file = try AgentConfiguration.load(file: repository.appendingPathComponent("Config/agent.yaml"))
        let limits = try EngineLimits(overrides: file.limits)
        return (file, try ProgramLibrary.load(directory: file.programsDirectory, limits: limits))
    }

    @Test("every agent-config seed loads or throws ConfigurationError naming the problem")
    func agentConfigSeeds() throws {
        let files = try Self.files("fuzz-agent-config")
        #expect(files.count >= 5)
        for file in files {
            let name = file.lastPathComponent
            do {
                _ = try AgentConfiguration.load(file: file)
                #expect(!name.hasPrefix("invalid-"), "\(name) was accepted")
            } catch {
                #expect(!name.hasPrefix("valid-"), "\(name) was refused: \(error)")
                #expect(!error.problems.isEmpty)
            }
        }
    }

    @Test("every desired-config seed is applied or rejected with reasons, as the agent would")
    func desiredConfigSeeds() throws {
        let (file, builtins) = try Self.shippedDevice()
        let files = try Self.files("fuzz-desired-config")
        #expect(files.count >= 5)
        for url in files {
            let name = url.lastPathComponent
            switch ConfigValidation.validateDesired(Array(try Data(contentsOf: url)), file: file, builtins: builtins) {
            case .success:
                #expect(!name.hasPrefix("invalid-"), "\(name) was accepted")
            case .failure(let rejection):
                #expect(!name.hasPrefix("valid-"), "\(name) was rejected: \(rejection)")
                #expect(!rejection.reasons.isEmpty)
            }
        }
    }

    @Test("the desired-config examples of docs/protocol.md are accepted by the agent as shipped, not only by the decoder")
    func protocolDocExamples() throws {
        let (file, builtins) = try Self.shippedDevice()
        let repository = AgentProcess.repositoryRoot
        let text = try String(contentsOf: repository.appendingPathComponent("docs/protocol.md"), encoding: .utf8)
        let blocks = text.components(separatedBy: "<!-- example: desired -->").dropFirst().compactMap { rest -> String? in
            guard let open = rest.range(of: "```json\n"), let close = rest.range(of: "\n```", range: open.upperBound..<rest.endIndex) else { return nil }
            return String(rest[open.upperBound..<close.lowerBound])
        }
        #expect(!blocks.isEmpty, "docs/protocol.md has desired-config examples")
        for block in blocks {
            if case .failure(let rejection) = ConfigValidation.validateDesired(Array(block.utf8), file: file, builtins: builtins) {
                Issue.record("the example is refused: \(rejection.reasons)\n\(block)")
            }
        }
    }

    @Test("ConfigValidation refuses what the device file forbids, naming the key")
    func validationUsesTheDeviceFile() throws {
        let (file, builtins) = try Self.shippedDevice()
        // Config/agent.yaml sets max_session_minutes: 20 (the hard limit is 30).
        let payload = Array(#"{"version": 2, "config": {"max_session_minutes": 25}}"#.utf8)
        let result = ConfigValidation.validateDesired(payload, file: file, builtins: builtins)
        guard case .failure(let rejection) = result else {
            Issue.record("a config above the device's own limit was accepted")
            return
        }
        #expect(rejection.version == 2)
        #expect(rejection.reasons.contains { $0.hasPrefix("config.max_session_minutes:") })
        let tighter = Array(#"{"version": 3, "config": {"max_session_minutes": 15}}"#.utf8)
        #expect((try? ConfigValidation.validateDesired(tighter, file: file, builtins: builtins).get())?.version == 3)
    }

    /// The Yams trap found by fuzz-rollout (crash-c856f092) reached the
    /// agent's configuration file too: a mapping key that is a sequence.
    @Test("an agent config whose mapping key is a sequence is a ConfigurationError, not a crash")
    func sequenceKeyIsAConfigurationError() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("agent-yaml-key-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("agent.yaml")
        try "site: s1\ndevice: d1\ndata_dir: data\n? [limits]\n: {max_session_minutes: 5}\n".write(to: file, atomically: true, encoding: .utf8)
        do {
            _ = try AgentConfiguration.load(file: file)
            Issue.record("a sequence key was accepted")
        } catch {
            #expect(error.problems.map(\.message) == ["not valid YAML: line 4: a key must be a plain value such as a name, got a sequence"])
        }
    }
}
