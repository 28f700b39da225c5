import Foundation
import MassageEngine
import Testing

@Suite("Program library and built-in programs")
struct ProgramLibraryTests {
    @Test("every built-in program validates")
    func builtInsValidate() throws {
        let library = try Harness.builtIns()
        #expect(library.ids == Harness.builtInIDs)
        for program in library.programs.values {
            #expect(program.totalSeconds <= EngineLimits.default.maxSessionSeconds, "\(program.id)")
            #expect(program.totalSeconds >= 5 * 60, "\(program.id)")
        }
    }

    @Test("each point program works its point with the brief's techniques after a calibration step")
    func pointPrograms() throws {
        let library = try Harness.builtIns()
        let expected: [String: (AcupressurePoint, Set<Technique>)] = [
            "knee-leg-relief": (.gb34, [.compression, .circular]),
            "calf-release": (.sp6, [.kneading, .rolling]),
            "sole-vitality": (.ki1, [.tapping, .shiatsu]),
        ]
        for (id, (point, techniques)) in expected {
            let program = try #require(library[id])
            let first = try #require(program.steps.first)
            #expect(first.point == point, "\(id)")
            #expect(first.isCalibration, "\(id)")
            #expect(first.intensity <= HardLimits.calibrationMaxIntensity, "\(id)")
            #expect(first.durationSeconds <= HardLimits.calibrationMaxSeconds, "\(id)")
            #expect(program.steps.allSatisfy { $0.point == point }, "\(id)")
            #expect(techniques.isSubset(of: Set(program.steps.dropFirst().map(\.technique))), "\(id)")
        }
    }

    @Test("plantar relief works heel and arch; full-leg circulation goes thigh to arch")
    func zonePrograms() throws {
        let library = try Harness.builtIns()
        let plantar = try #require(library["plantar-relief"])
        #expect(Set(plantar.steps.map(\.zone)) == [.heel, .arch])
        let full = try #require(library["full-leg-circulation"])
        #expect(full.steps.map(\.zone) == [.thigh, .calf, .shin, .achilles, .heel, .arch])
        let shin = try #require(library["shin-recovery"])
        #expect(shin.steps.contains { $0.zone == .shin })
    }

    @Test("relaxation programs use slow breathing cues")
    func relaxationBreathing() throws {
        let library = try Harness.builtIns()
        let relaxing = library.programs.values.filter(\.isRelaxation)
        #expect(Set(relaxing.map(\.id)) == ["calf-release", "knee-leg-relief", "plantar-relief"])
        for program in relaxing {
            for step in program.steps {
                let bpm = try #require(step.breathingBPM, "\(program.id)")
                #expect(bpm <= HardLimits.relaxationMaxBreathingBPM, "\(program.id)")
            }
        }
    }

    @Test("loading reports every bad file by name with its reasons")
    func badFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("programs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func write(_ name: String, _ text: String) throws {
            try text.write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        try write("good.yaml", """
            id: good
            name: Good
            steps:
              - {target: calf, technique: kneading, intensity: 4, duration_s: 60}
            """)
        try write("ankle-tap.yaml", """
            id: ankle-tap
            name: Ankle tap
            steps:
              - {target: achilles, technique: tapping, intensity: 3, duration_s: 60}
            """)
        try write("typo.yaml", """
            id: typo
            name: Typo
            steps:
              - {target: calf, technique: kneading, intensity: 4, duration_s: 60, breathing_bmp: 6}
            """)
        try write("misnamed.yaml", """
            id: something-else
            name: Misnamed
            steps:
              - {target: calf, technique: kneading, intensity: 4, duration_s: 60}
            """)
        try write("broken.yaml", "id: [unclosed")
        try write("notes.txt", "not a program")

        let error = #expect(throws: ProgramLibraryError.self) {
            _ = try ProgramLibrary.load(directory: dir)
        }
        let bySource = Dictionary(uniqueKeysWithValues: (error?.failures ?? []).map { ($0.source, $0.messages.joined(separator: "; ")) })
        #expect(Set(bySource.keys) == ["ankle-tap.yaml", "typo.yaml", "misnamed.yaml", "broken.yaml"])
        #expect(bySource["ankle-tap.yaml"]?.contains("step 0 technique: tapping is not suited to the achilles") == true)
        #expect(bySource["typo.yaml"]?.contains("step 0: unknown key 'breathing_bmp'") == true)
        #expect(bySource["misnamed.yaml"]?.contains("name the file something-else.yaml") == true)
        #expect(bySource["broken.yaml"]?.contains("not valid YAML") == true)
    }

    @Test("an unknown program is refused with the known ids")
    func unknownProgram() throws {
        let library = try Harness.builtIns()
        let error = #expect(throws: EngineError.self) { _ = try library.program("calf-relase") }
        #expect(error?.code == .invalidParams)
        #expect(error?.message == "program \"calf-relase\" not found; known: \(Harness.builtInIDs.joined(separator: ", "))")
    }

    @Test("configuration can add a program, but not an invalid one")
    func addPrograms() throws {
        let library = try Harness.builtIns()
        let extra = ProgramSpec(id: "thigh-quick", name: "Quick thigh", steps: [step("thigh", "tapping", 6, 120)])
        let bigger = try library.adding([extra])
        #expect(bigger.ids.contains("thigh-quick"))
        let bad = ProgramSpec(id: "bad", name: "Bad", steps: [step("heel", "kneading", 3, 60)])
        let error = #expect(throws: ProgramLibraryError.self) { _ = try library.adding([extra, bad]) }
        #expect(error?.failures.map(\.source) == ["program \"bad\""])
    }
}
