import Foundation
import MassageEngine
import Testing

@Suite("Hard limits and configuration")
struct LimitsTests {
    @Test("no hard ceiling is above 180 mmHg and shin, achilles and heel are lower")
    func hardCeilings() {
        for zone in Zone.allCases {
            #expect(HardLimits.ceiling(zone) <= 180)
            #expect(HardLimits.ceiling(zone) <= HardLimits.absoluteCeilingMMHg)
        }
        let softest = [Zone.thigh, .calf, .arch].map(HardLimits.ceiling).min()!
        for bony in [Zone.shin, .achilles, .heel] {
            #expect(HardLimits.ceiling(bony) < softest, "\(bony)")
        }
        #expect(HardLimits.maxSessionSeconds == 30 * 60)
        #expect(HardLimits.defaultMaxSessionSeconds == 20 * 60)
        #expect(HardLimits.maxSoftStopSeconds <= 2)
        #expect(HardLimits.softStopSeconds <= HardLimits.maxSoftStopSeconds)
    }

    @Test("intensity maps to pressure that rises with the level and tops out at the ceiling")
    func intensityMap() {
        for zone in Zone.allCases {
            var previous = 0.0
            for level in 1...10 {
                let p = HardLimits.pressure(level: level, zone: zone)
                #expect(p > previous)
                #expect(p <= HardLimits.ceiling(zone))
                previous = p
            }
            #expect(HardLimits.pressure(level: 10, zone: zone) == HardLimits.ceiling(zone))
        }
    }

    @Test("config cannot raise a ceiling")
    func cannotRaiseCeiling() {
        let error = #expect(throws: EngineLimitsError.self) {
            _ = try EngineLimits(ceilingsMMHg: [.calf: 200])
        }
        #expect(error?.problems.count == 1)
        #expect(error?.problems.first?.key == "ceilings_mmhg.calf")
        #expect(error?.problems.first?.hardLimit == 160)
        #expect(error?.description.contains("hard limit of 160 mmHg") == true)
        // Through the configuration document too, with every problem listed.
        let overrides = EngineLimits.Overrides(ceilingsMMHg: ["achilles": 61, "shin": 120, "knee": 50])
        let several = #expect(throws: EngineLimitsError.self) {
            _ = try EngineLimits(overrides: overrides)
        }
        #expect(several?.problems.map(\.key) == ["ceilings_mmhg.achilles", "ceilings_mmhg.knee", "ceilings_mmhg.shin"])
    }

    @Test("config cannot raise the session maximum or the motor temperature")
    func cannotRaiseSessionOrTemperature() {
        let error = #expect(throws: EngineLimitsError.self) {
            _ = try EngineLimits(maxSessionMinutes: 31, maxMotorTemperatureC: 80)
        }
        let byKey = Dictionary(uniqueKeysWithValues: (error?.problems ?? []).map { ($0.key, $0) })
        #expect(byKey["max_session_minutes"]?.hardLimit == 30)
        #expect(byKey["max_session_minutes"]?.message.contains("hard limit of 30 min") == true)
        #expect(byKey["max_motor_temp_c"]?.hardLimit == 70)
        #expect(throws: EngineLimitsError.self) { _ = try EngineLimits(maxSessionMinutes: 0) }
        #expect(throws: EngineLimitsError.self) { _ = try EngineLimits(ceilingsMMHg: [.thigh: -5]) }
    }

    @Test("config may lower ceilings, the session maximum and the motor temperature")
    func canLower() throws {
        let limits = try EngineLimits(ceilingsMMHg: [.calf: 100], maxSessionMinutes: 30, maxMotorTemperatureC: 55)
        #expect(limits.ceiling(.calf) == 100)
        #expect(limits.ceiling(.thigh) == 180)
        #expect(limits.maxSessionSeconds == 1800)
        #expect(limits.maxMotorTemperatureC == 55)
        #expect(limits.motorResumeTemperatureC == 45)
        #expect(limits.maxLevel(on: .calf) == 6)  // level 6 = 96 mmHg, level 7 = 112 mmHg
        #expect(EngineLimits.default.maxSessionSeconds == 20 * 60)
        #expect(EngineLimits.default.maxMotorTemperatureC == 65)
    }

    @Test("limit overrides decode from the desired-config keys")
    func overridesDecode() throws {
        let json = #"{"max_session_minutes": 15, "ceilings_mmhg": {"heel": 90}, "max_motor_temp_c": 60}"#
        let overrides = try JSONDecoder().decode(EngineLimits.Overrides.self, from: Data(json.utf8))
        let limits = try EngineLimits(overrides: overrides)
        #expect(limits.maxSessionSeconds == 900)
        #expect(limits.ceiling(.heel) == 90)
        #expect(limits.maxMotorTemperatureC == 60)
    }

    @Test("limits cannot change while a session runs")
    func limitsChangeBetweenSessions() throws {
        let h = try Harness()
        try h.engine.start(.program("calf-release"))
        let error = #expect(throws: EngineError.self) {
            try h.engine.replaceLimits(try EngineLimits(maxSessionMinutes: 10))
        }
        #expect(error?.code == .busy)
        try h.engine.stop()
        #expect(h.runUntilIdle())
        try h.engine.replaceLimits(try EngineLimits(maxSessionMinutes: 10))
        #expect(h.engine.limits.maxSessionSeconds == 600)
    }

    @Test("invalid engine configuration is refused")
    func badConfiguration() {
        #expect(throws: EngineError.self) {
            _ = try Harness(configuration: EngineConfiguration(controlTick: .milliseconds(7)))
        }
    }
}
