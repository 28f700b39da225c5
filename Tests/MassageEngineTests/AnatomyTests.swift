import Foundation
import MassageEngine
import Testing

@Suite("Anatomy, techniques and suitability")
struct AnatomyTests {
    @Test("zones, points and techniques use the lower-case wire ids")
    func wireIDs() {
        #expect(Zone.allCases.map(\.rawValue) == ["thigh", "calf", "shin", "achilles", "heel", "arch"])
        #expect(AcupressurePoint.allCases.map(\.rawValue) == ["gb34", "sp6", "ki1"])
        #expect(Technique.allCases.map(\.rawValue) == ["compression", "circular", "kneading", "rolling", "tapping", "shiatsu"])
        #expect(Target(id: "calf") == .zone(.calf))
        #expect(Target(id: "gb34") == .point(.gb34))
        #expect(Target(id: "GB34") == nil)
        #expect(Target(id: "knee") == nil)
    }

    @Test("each point lies in its zone with the brief's location")
    func pointsAndZones() {
        #expect(AcupressurePoint.gb34.zone == .shin)
        #expect(AcupressurePoint.sp6.zone == .calf)
        #expect(AcupressurePoint.ki1.zone == .arch)
        #expect(AcupressurePoint.gb34.location.contains("outer side of the shinbone"))
        #expect(AcupressurePoint.sp6.location.contains("four finger-widths above the ankle bone"))
        #expect(AcupressurePoint.ki1.location.contains("centre of the sole"))
        #expect(Target.point(.sp6).zone == .calf)
    }

    @Test("the brief's pairings suit their points")
    func briefPairings() {
        for point in AcupressurePoint.allCases {
            for technique in point.pairedTechniques {
                #expect(Suitability.of(technique, on: .point(point)).isAllowed, "\(technique) at \(point)")
            }
            // Calibration uses gentle compression at every point.
            #expect(Suitability.of(.compression, on: .point(point)).isAllowed)
        }
    }

    @Test("tapping and kneading are refused on the achilles with a reason")
    func achillesRefusals() {
        for technique in [Technique.tapping, .kneading] {
            guard case .unsuited(let reason) = Suitability.of(technique, on: .zone(.achilles)) else {
                Issue.record("\(technique) on the achilles should be refused")
                continue
            }
            #expect(reason.localizedCaseInsensitiveContains("tendon"))
        }
    }

    @Test("strong compression on the shin is refused, gentle compression allowed")
    func shinCompression() {
        let rule = Suitability.of(.compression, on: .zone(.shin))
        #expect(rule.isAllowed)
        #expect(rule.maxIntensity == 4)
        #expect(rule.reason?.contains("shinbone") == true)
        // The limit carries over to GB34, which lies on the shin.
        #expect(Suitability.of(.compression, on: .point(.gb34)).maxIntensity == 4)
        #expect(!Suitability.of(.tapping, on: .zone(.shin)).isAllowed)
    }

    @Test("every refusal and limit in the suitability table gives a reason")
    func everyRefusalHasAReason() {
        let table = Suitability.table
        #expect(table.count == Target.all.count * Technique.allCases.count)
        for entry in table {
            switch entry.rule {
            case .suited:
                break
            case .limited(let max, let reason):
                #expect((1...9).contains(max))
                #expect(reason.count > 20, "\(entry.technique) on \(entry.target)")
            case .unsuited(let reason):
                #expect(reason.count > 20, "\(entry.technique) on \(entry.target)")
            }
        }
        // Soft-tissue zones take every technique.
        for zone in [Zone.thigh, .calf, .arch] {
            #expect(Technique.allCases.allSatisfy { Suitability.of($0, on: .zone(zone)) == .suited })
        }
    }

    @Test("a technique that drifts off a point is refused at that point")
    func areaTechniquesAtPoints() {
        #expect(!Suitability.of(.rolling, on: .point(.gb34)).isAllowed)
        #expect(!Suitability.of(.tapping, on: .point(.sp6)).isAllowed)
        #expect(!Suitability.of(.kneading, on: .point(.ki1)).isAllowed)
    }
}
