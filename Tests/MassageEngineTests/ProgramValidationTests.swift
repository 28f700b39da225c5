import Foundation
import MassageEngine
import Testing

@Suite("Program validation")
struct ProgramValidationTests {
    func issues(_ spec: ProgramSpec, limits: EngineLimits = .default) -> [ValidationIssue] {
        do {
            _ = try ProgramValidator.validate(spec, limits: limits)
            return []
        } catch {
            return error.issues
        }
    }

    @Test("a program that taps the achilles is refused with the reason")
    func tappingTheAchilles() {
        let spec = ProgramSpec(id: "ankle-tap", name: "Ankle tap", steps: [step("achilles", "tapping", 3, 60)])
        let found = issues(spec)
        #expect(found.count == 1)
        #expect(found.first?.stepIndex == 0)
        #expect(found.first?.field == "technique")
        #expect(found.first?.message.contains("tapping is not suited to the achilles") == true)
        #expect(found.first?.message.contains("tendon") == true)
    }

    @Test("validation lists every reason, each naming the step and the field")
    func everyReason() {
        let spec = ProgramSpec(id: "Bad Program!", name: " ", relaxation: true, steps: [
            step("knee", "compression", 3, 60, bpm: 6),          // 0: unknown target
            step("calf", "pummel", 3, 60, bpm: 6),               // 1: unknown technique
            step("calf", "kneading", 11, 60, bpm: 6),            // 2: intensity out of range
            step("heel", "rolling", 4, 0, bpm: 6),               // 3: non-positive duration
            step("arch", "shiatsu", 4, 60, bpm: 30),             // 4: breathing cue out of range
            step("thigh", "kneading", 4, 60, bpm: 14),           // 5: too fast for relaxation
            step("shin", "compression", 7, 60, bpm: 6),          // 6: strong compression on the shin
            step("thigh", "kneading", 4, 60),                    // 7: relaxation without a cue
        ])
        let found = issues(spec)
        let places = Set(found.map { "\($0.stepIndex.map(String.init) ?? "-") \($0.field)" })
        #expect(places == [
            "- id", "- name",
            "0 target", "1 technique", "2 intensity", "3 duration_s",
            "4 breathing_bpm", "5 breathing_bpm", "6 intensity", "7 breathing_bpm",
        ])
        #expect(found.first { $0.stepIndex == 0 }?.message.contains("known: thigh, calf, shin, achilles, heel, arch, gb34, sp6, ki1") == true)
        #expect(found.first { $0.stepIndex == 1 }?.message.contains("known: compression, circular") == true)
        #expect(found.first { $0.stepIndex == 6 }?.message.contains("at most 4") == true)
    }

    @Test("a total longer than the session maximum is refused")
    func totalOverMaximum() throws {
        let steps = (0..<5).map { _ in step("calf", "kneading", 4, 300) }  // 25 min
        let found = issues(ProgramSpec(id: "long", name: "Long", steps: steps))
        #expect(found.count == 1)
        #expect(found.first?.field == "steps")
        #expect(found.first?.message.contains("session maximum of 1200 s") == true)
        // A device configured up to the hard 30 min accepts it.
        #expect(issues(ProgramSpec(id: "long", name: "Long", steps: steps), limits: try EngineLimits(maxSessionMinutes: 30)).isEmpty)
    }

    @Test("pressure over a lowered ceiling is refused with the highest allowed level")
    func loweredCeiling() throws {
        let limits = try EngineLimits(ceilingsMMHg: [.calf: 100])
        let found = issues(ProgramSpec(id: "firm", name: "Firm", steps: [step("calf", "kneading", 8, 60)]), limits: limits)
        #expect(found.count == 1)
        #expect(found.first?.field == "intensity")
        #expect(found.first?.message.contains("128 mmHg") == true)
        #expect(found.first?.message.contains("ceiling of 100 mmHg") == true)
        #expect(found.first?.message.contains("highest allowed level: 6") == true)
    }

    @Test("the first step at a point must be a short low-intensity calibration")
    func calibrationRule() throws {
        let bad = issues(ProgramSpec(id: "sp6-hard", name: "SP6", steps: [
            step("sp6", "kneading", 6, 120),
        ]))
        #expect(Set(bad.map(\.field)) == ["intensity", "duration_s"])
        #expect(bad.allSatisfy { $0.message.contains("calibration") })

        let good = try ProgramValidator.validate(ProgramSpec(id: "sp6-ok", name: "SP6", steps: [
            step("sp6", "compression", 2, 30),
            step("sp6", "kneading", 6, 120),
            step("calf", "kneading", 5, 60),
        ]))
        #expect(good.steps.map(\.isCalibration) == [true, false, false])
        #expect(good.totalSeconds == 210)
    }

    @Test("an empty program and a bad id are refused")
    func emptyProgram() {
        let found = issues(ProgramSpec(id: "", name: "Nothing", steps: []))
        #expect(Set(found.map(\.field)) == ["id", "steps"])
    }

    @Test("program documents round-trip through JSON with the wire keys")
    func wireKeys() throws {
        let spec = ProgramSpec(id: "x", name: "X", relaxation: true, steps: [step("sp6", "compression", 2, 30, bpm: 6)])
        let json = String(decoding: try JSONEncoder().encode(spec), as: UTF8.self)
        for key in ["\"id\"", "\"name\"", "\"steps\"", "\"target\"", "\"technique\"", "\"intensity\"", "\"duration_s\"", "\"breathing_bpm\"", "\"relaxation\""] {
            #expect(json.contains(key), "\(key)")
        }
        #expect(try JSONDecoder().decode(ProgramSpec.self, from: Data(json.utf8)) == spec)
    }
}
