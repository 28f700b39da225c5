import FleetProtocol
import FleetSettings
import FleetTestSupport
import Foundation
import MassageEngine
@testable import MassageAgent
import Testing

@Suite("Simulator test control (test only)")
struct SimulatorTestControlTests {
    func load(_ yaml: String) throws(ConfigurationError) -> AgentConfiguration {
        let dir = try! TemporaryDirectory(prefix: "agent-config")
        let file = dir.url.appendingPathComponent("agent.yaml")
        try! yaml.write(to: file, atomically: true, encoding: .utf8)
        return try AgentConfiguration.load(file: file)
    }

    let minimal = """
        site: clinic-a
        device: m-1
        data_dir: data
        """

    @Test("hardware.test_control is off by default, resolves against the file, and lock_memory defaults to on")
    func keysAndDefaults() throws {
        let plain = try load(minimal)
        #expect(plain.testControlSocket == nil)
        #expect(plain.lockMemory)
        let set = try load(minimal + "\nhardware: {kind: simulated, seed: 3, test_control: run/control.sock}\nlock_memory: false\n")
        #expect(set.testControlSocket?.path.hasSuffix("/run/control.sock") == true)
        #expect(set.hardwareSeed == 3)
        #expect(!set.lockMemory)
    }

    @Test("bad test_control and lock_memory values, and unknown hardware keys, are refused naming the key")
    func badValues() {
        let long = "/tmp/" + String(repeating: "s", count: 120)
        let error = #expect(throws: ConfigurationError.self) {
            try load(minimal + "\nhardware: {kind: simulated, test_control: \(long), test_contrl: x}\nlock_memory: maybe\n")
        }
        let problems = Dictionary((error?.problems ?? []).map { ($0.key, $0.message) }, uniquingKeysWith: { a, _ in a })
        #expect(problems["hardware.test_control"]?.contains("at most 107 bytes") == true, "\(problems)")
        #expect(problems["hardware.test_contrl"]?.contains("unknown key") == true, "\(problems)")
        #expect(problems["lock_memory"] == "expected true or false, got maybe", "\(problems)")
    }

    @Test("the decorator times a press: the read that saw it, then the release after it; reads are counted as tick intervals")
    func pressTiming() {
        let control = SimulatorTestControl(simulator: SimulatedMassager(seed: 1))
        _ = control.read(engineTime: 0)
        control.releaseAll()  // a release before any press is not the press's
        #expect(control.lastPress.released == 0)
        let pressed = control.press()
        #expect(control.read(engineTime: 0.02).stopButtonPressed)
        control.releaseAll()
        let timing = control.lastPress
        #expect(timing.pressed == pressed && timing.seen >= pressed && timing.released >= timing.seen)
        control.releaseAll()  // later releases do not move it
        #expect(control.lastPress.released == timing.released)
        #expect(control.releaseRecord.count == 3)
        #expect(control.tickIntervals().count == 1)
        control.unpress()
        #expect(!control.read(engineTime: 0.04).stopButtonPressed)
        control.resetTickIntervals()
        #expect(control.tickIntervals().count == 0)
    }

    @Test("tick histogram quantiles are the upper edge of their 10 µs bin, the maximum exact")
    func histogram() {
        var histogram = TickHistogram()
        #expect(histogram.quantile(0.5) == 0)
        for _ in 0..<998 { histogram.record(20_003_000) }
        histogram.record(21_500_000)
        histogram.record(250_000_000)
        #expect(histogram.quantile(0.5) == 20_010_000)
        #expect(histogram.quantile(0.999) == 21_510_000)
        #expect(histogram.quantile(1) == 250_000_000)
        #expect(histogram.maximum == 250_000_000 && histogram.beyond == 1)
    }
}
