import Foundation
import MassageEngine
import Testing
@testable import FleetProtocol

@Suite("Desired config documents")
struct DesiredConfigTests {
    func reject(_ json: String, sourceLocation: SourceLocation = #_sourceLocation) -> ConfigRejection? {
        switch DesiredConfig.decode(Data(json.utf8)) {
        case .success(let c):
            Issue.record("expected a rejection, got \(c)", sourceLocation: sourceLocation)
            return nil
        case .failure(let r): return r
        }
    }

    @Test("a full config from the contract decodes")
    func valid() throws {
        let desired = try DesiredConfig.decode(Data("""
            {"version":3,"config":{"max_session_minutes":20,"telemetry_interval_s":1,"usage_interval_s":60,
             "default_intensity":4,"pressure_ceiling_mmhg":{"shin":35,"calf":60.5},"max_motor_temp_c":55,
             "programs":[{"id":"calf-quick","name":"Quick calf","description":"Short calf release",
                          "steps":[{"target":"sp6","technique":"kneading","intensity":3,"duration_s":120,"breathing_bpm":6}]}]}}
            """.utf8)).get()
        #expect(desired.version == 3)
        #expect(desired.config == DeviceConfig(
            maxSessionMinutes: 20, telemetryIntervalSeconds: 1, usageIntervalSeconds: 60, defaultIntensity: 4,
            programs: [ProgramSpec(id: "calf-quick", name: "Quick calf", description: "Short calf release", steps: [
                StepSpec(target: "sp6", technique: "kneading", intensity: 3, durationSeconds: 120, breathingBPM: 6),
            ])],
            pressureCeilingMMHg: ["shin": 35, "calf": 60.5], maxMotorTempC: 55))
        #expect(try DesiredConfig.decode(Data(#"{"version":1,"config":{}}"#.utf8)).get().config == DeviceConfig())
    }

    @Test("an unknown key is a rejection naming the key")
    func unknownKey() {
        let r = reject(#"{"version":4,"config":{"max_session_minutes":20,"colour":"blue"}}"#)
        #expect(r?.version == 4)
        #expect(r?.reasons == [
            "config.colour: unknown key; known keys: max_session_minutes, telemetry_interval_s, usage_interval_s, default_intensity, programs, pressure_ceiling_mmhg, max_motor_temp_c",
        ])
        #expect(reject(#"{"version":4,"config":{},"note":"x"}"#)?.reasons
            == ["note: unknown key; a desired config has version, config"])
        #expect(reject(#"{"version":4,"config":{"programs":[{"id":"p","name":"P","steps":[{"target":"calf","technique":"kneading","intensity":3,"duration_s":60,"speed":2}],"colour":1}]}}"#)?.reasons == [
            "config.programs[0].colour: unknown key; a program has description, id, name, relaxation, steps",
            "config.programs[0].steps[0].speed: unknown key; a step has breathing_bpm, duration_s, intensity, target, technique",
        ])
    }

    @Test("every out-of-range value is reported, each naming its key, all at once")
    func allReasons() {
        let r = reject("""
            {"version":9,"config":{"max_session_minutes":45,"telemetry_interval_s":0,"usage_interval_s":-5,
             "default_intensity":"strong","max_motor_temp_c":-1,"pressure_ceiling_mmhg":{"shin":0,"Calf":20},
             "wat":true,"programs":[{"id":"Bad Id","name":"","steps":[]},{"id":"ok","name":"OK","steps":[
               {"target":"calf","technique":"kneading","intensity":0,"duration_s":0}]}]}}
            """)
        #expect(r?.version == 9)
        #expect(r?.reasons == [
            "config.wat: unknown key; known keys: max_session_minutes, telemetry_interval_s, usage_interval_s, default_intensity, programs, pressure_ceiling_mmhg, max_motor_temp_c",
            "config.max_session_minutes: expected an integer 1–30, got 45",
            "config.telemetry_interval_s: expected a number of seconds from 0.1 to 3600, got 0",
            "config.usage_interval_s: expected a number of seconds from 1 to 86400, got -5",
            "config.default_intensity: expected an integer 1–10, got \"strong\"",
            "config.programs[0].id: expected a program id matching [a-z0-9][a-z0-9_-]{0,62}, got \"Bad Id\"",
            "config.programs[0].name: expected a non-empty string, got \"\"",
            "config.programs[0].steps: expected at least one step, got an empty array",
            "config.programs[1].steps[0].intensity: expected an integer 1–10, got 0",
            "config.programs[1].steps[0].duration_s: expected a positive whole number of seconds, got 0",
            "config.pressure_ceiling_mmhg.Calf: expected a zone id matching [a-z0-9][a-z0-9_-]{0,62} as the key",
            "config.pressure_ceiling_mmhg.shin: expected a positive number of mmHg, got 0",
            "config.max_motor_temp_c: expected a positive number of °C, got -1",
        ])
    }

    @Test("version and config are required; version must be a positive integer")
    func envelopeFields() {
        #expect(reject(#"{"config":{}}"#)?.reasons == ["missing field \"version\""])
        #expect(reject(#"{"version":2}"#)?.reasons == ["missing field \"config\""])
        #expect(reject(#"{"version":2}"#)?.version == 2)
        #expect(reject(#"{"version":"7","config":{}}"#)?.reasons == ["version: expected a positive integer, got \"7\""])
        #expect(reject(#"{"version":0,"config":{}}"#)?.version == nil)
        #expect(reject(#"{"version":3,"config":[]}"#)?.reasons == ["config: expected an object, got an array"])
        #expect(reject("not json")?.reasons.first?.hasPrefix("not valid JSON") == true)
        #expect(reject("[]")?.reasons == ["expected a desired config object {\"version\", \"config\"}, got an array"])
    }

    @Test("duplicate program ids are refused")
    func duplicatePrograms() {
        let step = #"{"target":"calf","technique":"kneading","intensity":3,"duration_s":60}"#
        let r = reject(#"{"version":1,"config":{"programs":[{"id":"a","name":"A","steps":[\#(step)]},{"id":"a","name":"A2","steps":[\#(step)]}]}}"#)
        #expect(r?.reasons == ["config.programs[1].id: duplicate program id \"a\" (also at config.programs[0])"])
    }

    @Test("the semantic seam runs the engine's checks on a structurally valid config")
    func semanticSeam() {
        let json = Data(#"{"version":5,"config":{"pressure_ceiling_mmhg":{"shin":500}}}"#.utf8)
        let result = DesiredConfig.decode(json) { config in
            (config.pressureCeilingMMHg ?? [:]).compactMap { zone, mmHg in
                mmHg > 45 ? "config.pressure_ceiling_mmhg.\(zone): \(mmHg) is above the hard ceiling 45" : nil
            }
        }
        #expect(result == .failure(ConfigRejection(version: 5, reasons: [
            "config.pressure_ceiling_mmhg.shin: 500.0 is above the hard ceiling 45",
        ])))
        var called = false
        _ = DesiredConfig.decode(Data(#"{"version":5,"config":{"colour":1}}"#.utf8)) { _ in
            called = true
            return []
        }
        #expect(!called, "structural rejections stop before the engine's checks")
    }

    @Test("a rejection becomes a reported config naming its reasons")
    func reported() {
        let rejection = ConfigRejection(version: 6, reasons: ["config.a: x", "config.b: y"])
        #expect(rejection.reported(appliedVersion: 5) == ReportedConfig(
            version: 6, state: .rejected, appliedVersion: 5, error: "2 problems: config.a: x; …",
            reasons: ["config.a: x", "config.b: y"]))
    }

    @Test("program and step keys are the engine's document keys")
    func specKeys() {
        #expect(SpecChecks.stepKeys == StepSpec.documentKeys)
        #expect(SpecChecks.programKeys == ProgramSpec.documentKeys)
        #expect(SpecChecks.stepKeys.isSuperset(of: ["target", "technique", "intensity", "duration_s", "breathing_bpm"]))
        #expect(SpecChecks.programKeys.isSuperset(of: ["id", "name", "description", "steps"]))
    }

    @Test("program fields this module does not check are carried by the engine's own decoding")
    func engineFieldsCarried() throws {
        let step = #"{"target":"calf","technique":"kneading","intensity":3,"duration_s":60,"breathing_bpm":5}"#
        let desired = try DesiredConfig.decode(Data(#"{"version":2,"config":{"programs":[{"id":"slow","name":"Slow","relaxation":true,"steps":[\#(step)]}]}}"#.utf8)).get()
        #expect(desired.config.programs?.first == ProgramSpec(id: "slow", name: "Slow", relaxation: true, steps: [
            StepSpec(target: "calf", technique: "kneading", intensity: 3, durationSeconds: 60, breathingBPM: 5),
        ]))
        #expect(reject(#"{"version":2,"config":{"programs":[{"id":"slow","name":"Slow","relaxation":"yes","steps":[\#(step)]}]}}"#)?.reasons
            == ["config.programs[0].relaxation: expected true or false, got \"yes\""])
    }
}
