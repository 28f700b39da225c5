import Foundation
import MassagerLink
import Testing

@Suite("docs/hardware.md")
struct RegisterMapDocTests {
    static let doc = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("docs/hardware.md")

    @Test("the register table in docs/hardware.md equals RegisterMap (address, name, R/W)")
    func tableMatchesCode() throws {
        let text = try String(contentsOf: Self.doc, encoding: .utf8)
        var rows: [String] = []
        for line in text.split(separator: "\n") {
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            // | address | name | unit | R/W | meaning |
            guard cells.count >= 6, let address = Int(cells[1]) else { continue }
            rows.append("\(address) \(cells[2]) \(cells[4])")
        }
        let code = RegisterMap.registers.map { "\($0.address) \($0.name) \($0.access.rawValue)" }
        #expect(!rows.isEmpty)
        #expect(rows == code)
    }

    @Test("every duty in docs/safety.md's second-channel table names a test that exists")
    func safetyTableNamesRealTests() throws {
        let root = Self.doc.deletingLastPathComponent().deletingLastPathComponent()
        let doc = try String(contentsOf: root.appendingPathComponent("docs/safety.md"), encoding: .utf8)
        let section = try #require(doc.components(separatedBy: "## The second channel").last)
        let dir = root.appendingPathComponent("Tests/MassagerLinkTests")
        let tests = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".swift") }
            .map { try String(contentsOf: dir.appendingPathComponent($0), encoding: .utf8) }.joined(separator: "\n")
        var count = 0
        for row in section.split(separator: "\n") where row.hasPrefix("| ") && !row.hasPrefix("| duty") {
            let names = row.split(separator: "\"").enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
            for name in names {
                count += 1
                #expect(tests.contains("@Test(\"\(name)\""), "docs/safety.md names a test that does not exist: \(name)")
            }
        }
        #expect(count >= 8)
    }
}
