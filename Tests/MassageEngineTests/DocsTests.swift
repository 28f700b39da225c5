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
}
