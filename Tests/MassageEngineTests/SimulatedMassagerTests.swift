import Foundation
import MassageEngine
import Testing

@Suite("Simulated massager")
struct SimulatedMassagerTests {
    func command(_ zone: Zone, _ mmHg: Double, duty: Double = 0) -> ActuatorCommand {
        var pressures = ZoneValues<Double>(repeating: 0)
        pressures[zone] = mmHg
        return ActuatorCommand(pressuresMMHg: pressures, technique: .compression, motorDuty: duty)
    }

    @Test("pressure follows its target with a first-order lag")
    func firstOrderLag() {
        var parameters = SimulatedMassager.Parameters()
        parameters.pressureNoiseMMHg = 0
        let sim = SimulatedMassager(seed: 1, parameters: parameters)
        _ = sim.read(engineTime: 0)
        sim.apply(command(.calf, 100))
        let tau = parameters.inflateTimeConstant
        let atTau = sim.read(engineTime: tau).pressuresMMHg.calf
        #expect(abs(atTau - 100 * (1 - exp(-1))) < 0.01)
        let later = sim.read(engineTime: 5 * tau).pressuresMMHg.calf
        #expect(abs(later - 100 * (1 - exp(-5))) < 0.01)
        #expect(sim.read(engineTime: 5 * tau).pressuresMMHg.thigh == 0)
    }

    @Test("the motor heats with duty and cools at rest")
    func motorTemperature() {
        var parameters = SimulatedMassager.Parameters()
        parameters.temperatureNoiseC = 0
        let sim = SimulatedMassager(seed: 1, parameters: parameters)
        _ = sim.read(engineTime: 0)
        sim.apply(command(.thigh, 100, duty: 1))
        var t = 0.0
        for _ in 0..<600 { t += 1; _ = sim.read(engineTime: t) }
        let hot = sim.snapshot().motorTemperatureC
        // Steady state at full duty: ambient + heating × cooling time constant = 65 °C.
        let expected = 25 + 40 * (1 - exp(-2.0))
        #expect(abs(hot - expected) < 0.5)
        sim.releaseAll()
        for _ in 0..<300 { t += 1; _ = sim.read(engineTime: t) }
        let cooled = sim.snapshot().motorTemperatureC
        #expect(abs((cooled - 25) - (hot - 25) * exp(-1)) < 0.5)
    }

    @Test("the simulator is deterministic given a seed")
    func deterministic() {
        func trace(seed: UInt64) -> [SensorReadings] {
            let sim = SimulatedMassager(seed: seed)
            sim.apply(command(.arch, 80, duty: 0.5))
            return (0..<200).map { sim.read(engineTime: Double($0) * 0.02) }
        }
        #expect(trace(seed: 42) == trace(seed: 42))
        #expect(trace(seed: 42) != trace(seed: 43))
    }

    @Test("whole engine runs are reproducible with the same seed")
    func reproducibleEngine() throws {
        func run() throws -> [Double] {
            let h = try Harness(simulator: SimulatedMassager(seed: 99))
            try h.engine.start(.program("sole-vitality"))
            return (0..<2000).map { _ in h.tick(); return h.engine.telemetry().pressuresMMHg["arch"] ?? 0 }
        }
        #expect(try run() == run())
    }

    @Test("every supervisor rule has a fault to inject")
    func faultInjection() {
        let sim = SimulatedMassager(seed: 3)
        _ = sim.read(engineTime: 0)
        sim.inject(.painButton)
        #expect(sim.read(engineTime: 0.02).stopButtonPressed)
        sim.inject(.actuatorFailure(.heel))
        #expect(sim.read(engineTime: 0.04).hardwareFault?.zone == .heel)
        sim.inject(.implausiblePressure(.shin))
        #expect(sim.read(engineTime: 0.06).pressuresMMHg.shin == -50)
        sim.inject(.stuckPressureSensor(.calf))
        let a = sim.read(engineTime: 0.08), b = sim.read(engineTime: 0.10)
        #expect(a.pressureSamples.calf == b.pressureSamples.calf)
        #expect(a.pressureSamples.thigh != b.pressureSamples.thigh)
        sim.inject(.pressureSpike(zone: .thigh, mmHg: 200, reads: 1))
        #expect(sim.read(engineTime: 0.12).pressuresMMHg.thigh > 190)
        #expect(sim.read(engineTime: 0.14).pressuresMMHg.thigh < 10)
        sim.inject(.overheating(celsiusPerSecond: 10))
        _ = sim.read(engineTime: 1.14)
        #expect(sim.snapshot().motorTemperatureC > 34)
        sim.clearAllFaults()
        #expect(sim.snapshot().faults.isEmpty)
        #expect(!sim.read(engineTime: 1.16).stopButtonPressed)
    }
}
