import Foundation
import MassageEngine
import Testing

@Suite("Documentation")
struct DocsTests {
    var engineDoc: String {
        get throws { try String(contentsOf: Harness.repositoryRoot.appendingPathComponent("docs/engine.md"), encoding: .utf8) }
    }

    @Test("docs/engine.md shows the suitability table the code enforces")
    func suitabilityTable() throws {
        #expect(try engineDoc.contains(Suitability.markdownTable()))
    }

    @Test("docs/engine.md shows every hard ceiling and every refusal reason")
    func ceilingsAndReasons() throws {
        let doc = try engineDoc
        for zone in Zone.allCases {
            #expect(doc.contains("| \(zone.rawValue) | \(Int(HardLimits.ceiling(zone))) |"), "\(zone)")
        }
        for entry in Suitability.table where entry.target.point == nil {
            if let reason = entry.rule.reason {
                #expect(doc.contains(reason), "\(entry.technique) on \(entry.target)")
            }
        }
        for reason in AbortReason.allCases {
            #expect(doc.contains("`\(reason.rawValue)`"), "\(reason)")
        }
    }

    @Test("every control in docs/safety.md names a test that exists")
    func safetyControlsNameTheirTests() throws {
        let doc = try String(contentsOf: Harness.repositoryRoot.appendingPathComponent("docs/safety.md"), encoding: .utf8)
        let tests = try FileManager.default.subpathsOfDirectory(atPath: Harness.repositoryRoot.appendingPathComponent("Tests").path)
            .filter { $0.hasSuffix(".swift") }
            .map { try String(contentsOf: Harness.repositoryRoot.appendingPathComponent("Tests/\($0)"), encoding: .utf8) }
            .joined(separator: "\n")
        let rows = doc.split(separator: "\n").filter { $0.hasPrefix("| H") }
        #expect(rows.count >= 12)
        for row in rows {
            let cells = row.split(separator: "|", omittingEmptySubsequences: false)
            let testCell = String(cells[5])
            let names = testCell.split(separator: "\"").enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
            #expect(!names.isEmpty, "\(row.prefix(12)) names no test")
            for name in names {
                var prefix = name
                for tail in [": …", ", …", " …", "…"] where prefix.hasSuffix(tail) { prefix = String(prefix.dropLast(tail.count)) }
                let exists = tests.contains("@Test(\"\(prefix)")
                #expect(exists, "docs/safety.md names a test that does not exist: \(name)")
            }
        }
    }
}
