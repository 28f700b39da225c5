import Foundation
import Testing
import FleetProtocol

/// The fuzz seed corpus (Tests/Fuzz/Corpus), replayed in the ordinary test
/// run without sanitizers: every file named `valid-*` must decode, every
/// `invalid-*` must be refused with a reply that encodes, and any other file
/// (an input that once crashed a fuzz target) must simply not trap.
@Suite("Fuzz corpus: command decoding")
struct CommandFuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/Corpus/fuzz-command")

    static func files() throws -> [URL] {
        try FileManager.default.contentsOfDirectory(at: corpus, includingPropertiesForKeys: nil)
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    @Test("every seed decodes to a command or to a rejection whose reply encodes")
    func replay() throws {
        let files = try Self.files()
        #expect(files.count >= 10, "the seed corpus is missing from \(Self.corpus.path)")
        for file in files {
            let name = file.lastPathComponent
            let bytes = Array(try Data(contentsOf: file))
            switch decodeCommand(bytes) {
            case .success(let incoming):
                #expect(!name.hasPrefix("invalid-"), "\(name) was accepted")
                let encoded = try FleetJSON.encode(incoming.command)
                #expect((try? decodeCommand(Array(encoded)).get())?.request == incoming.request, "\(name) changed in a round trip")
            case .failure(let rejection):
                #expect(!name.hasPrefix("valid-"), "\(name) was refused: \(rejection)")
                let reply = try FleetJSON.decode(CommandReply.self, from: Array(try FleetJSON.encode(rejection.reply))).get()
                #expect(!reply.ok)
            }
        }
    }
}
