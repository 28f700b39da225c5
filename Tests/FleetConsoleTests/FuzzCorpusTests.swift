import FleetConsole
import Foundation
import MassageEngine
import Testing

/// The rollout fuzz seed corpus (Tests/Fuzz/Corpus/fuzz-rollout), replayed
/// in the ordinary test run as the API (JSON) and the CLI (YAML) take it:
/// `valid-*` documents decode, `invalid-*` are refused with reasons, any
/// other file (an input that once crashed a fuzz target) must not trap.
@Suite("Fuzz corpus: rollout documents")
struct RolloutFuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/Corpus/fuzz-rollout")

    @Test("every seed decodes to a document or to reasons")
    func replay() throws {
        let files = try FileManager.default.contentsOfDirectory(at: Self.corpus, includingPropertiesForKeys: nil)
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
        #expect(files.count >= 5)
        for file in files {
            let name = file.lastPathComponent
            var bytes = Array(try Data(contentsOf: file))
            if name.hasSuffix(".yaml") {
                do {
                    bytes = Array(try RolloutDocument.json(fromYAML: String(decoding: bytes, as: UTF8.self)))
                } catch {
                    #expect(!name.hasPrefix("valid-"), "\(name) is not a YAML mapping: \(error)")
                    continue
                }
            }
            switch RolloutDocument.decodeCollecting(bytes) {
            case .success(let document):
                #expect(!name.hasPrefix("invalid-"), "\(name) was accepted")
                #expect(document.problems(builtins: ProgramLibrary()).isEmpty)
            case .failure(let error):
                #expect(!name.hasPrefix("valid-"), "\(name) was refused: \(error.reasons)")
                #expect(!error.reasons.isEmpty)
            }
        }
    }

    /// fuzz-rollout, crash-c856f092: Yams force-unwraps every mapping key
    /// as a string, so a key that is a sequence trapped the CLI's
    /// `rollout create` (and every other YAML reader of the project).
    @Test("a rollout file whose mapping key is a sequence is refused with the line, not a crash")
    func sequenceKeyIsRefused() throws {
        let crash = "name: u\nconfig: {max_session_mi,utes: 98, [clinikc-north/massager-00]}\nwaname: u\nconf: !7\n"
        #expect(throws: YAMLLoadError.self) { try RolloutDocument.json(fromYAML: crash) }
        do {
            _ = try RolloutDocument.json(fromYAML: "name: r\n? [a, b]\n: 1\n")
            Issue.record("a sequence key was accepted")
        } catch let error as YAMLLoadError {
            #expect(error.description == "line 2: a key must be a plain value such as a name, got a sequence")
        }
        #expect(throws: YAMLLoadError.self) { try RolloutDocument.json(fromYAML: "targets: {sites: [a]}\nwaves: {{canary: 1}: 2}\n") }
        // Merge keys and anchors, which Yams handles, still load.
        let merged = try RolloutDocument.json(fromYAML: "base: &b {canary: 1}\nwaves: {<<: *b, factor: 2}\n")
        #expect(String(decoding: merged, as: UTF8.self).contains(#""waves":{"canary":1,"factor":2}"#))
    }
}
