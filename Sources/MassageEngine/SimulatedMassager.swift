import Foundation
import Synchronization

/// A fault the simulator can be told to have, one for each rule of the
/// safety supervisor.
public enum SimulatedFault: Hashable, Sendable {
    /// The pump surges: measured pressure on `zone` is `mmHg` higher for the next `reads` readings.
    case pressureSpike(zone: Zone, mmHg: Double, reads: Int)
    /// The zone's pressure sensor stops producing new samples.
    case stuckPressureSensor(Zone)
    /// The zone's pressure sensor reads an impossible value (−50 mmHg).
    case implausiblePressure(Zone)
    /// The motor temperature sensor stops producing new samples.
    case stuckTemperatureSensor
    /// A blocked vent: the motor gains this many °C per second on top of normal heating.
    case overheating(celsiusPerSecond: Double)
    /// The zone's actuator stops following commands and the hardware reports it.
    case actuatorFailure(Zone)
    /// The person presses the pain/stop button (held until cleared).
    case painButton
    /// The dump valve does not open: `releaseAll()` stops the motor and
    /// zeroes the setpoints, but the cells keep their air (a slow leak only).
    case stuckDumpValve
    /// The zone's pump runs away: its pressure rises by `mmHgPerSecond`
    /// whatever is commanded (up to what the cell holds).
    case runawayPump(zone: Zone, mmHgPerSecond: Double)
    /// The zone's pressure sensor keeps sampling but repeats its last value.
    case frozenPressureSensor(Zone)
    /// The dump valve is partly blocked: venting takes this time constant (s).
    case slowVent(timeConstantSeconds: Double)
}

/// The default massager wherever a real one is absent: six air cells with a
/// first-order pressure response, a motor that heats with duty and cools at
/// rest, seeded sensor noise, and fault injection. Deterministic: the same
/// seed and the same calls give the same readings.
public final class SimulatedMassager: MassagerHardware {
    public struct Parameters: Sendable, Equatable {
        /// Time constant of a cell inflating towards its setpoint (s).
        public var inflateTimeConstant: Double = 0.25
        /// Time constant of a cell deflating towards a lower setpoint (s).
        public var deflateTimeConstant: Double = 0.15
        /// Time constant of the dump valve opened by `releaseAll()` (s).
        public var ventTimeConstant: Double = 0.003
        /// Room temperature; the motor starts at it and cools towards it (°C).
        public var ambientC: Double = 25
        /// Heating at full duty (°C/s); steady state at duty d is ambient + d × heating × cooling time constant.
        public var heatingCPerSecond: Double = 40.0 / 300
        /// Cooling time constant at rest (s).
        public var coolingTimeConstant: Double = 300
        /// Pressure sensor noise amplitude (± mmHg).
        public var pressureNoiseMMHg: Double = 0.3
        /// Temperature sensor noise amplitude (± °C).
        public var temperatureNoiseC: Double = 0.05

        public init() {}
    }

    /// What the simulated massager is really doing (not what its sensors say).
    public struct Snapshot: Sendable, Equatable {
        public var pressuresMMHg: ZoneValues<Double>
        public var motorTemperatureC: Double
        /// True after `releaseAll()` until the next `apply(_:)`.
        public var released: Bool
        public var command: ActuatorCommand
        public var faults: Set<SimulatedFault>
        /// How many times the engine called `releaseAll()`.
        public var releaseCount: Int
    }

    private struct State {
        var parameters: Parameters
        var rng: SplitMix64
        var pressures = ZoneValues<Double>(repeating: 0)
        var temperature: Double
        var command = ActuatorCommand.idle
        var released = true
        var releaseCount = 0
        var lastTime: Double?
        var samples = ZoneValues<UInt32>(repeating: 0)
        var temperatureSample: UInt32 = 0
        // Last values reported (a stuck sensor repeats them); plain values, cheap to copy.
        var reportedPressures = ZoneValues<Double>(repeating: 0)
        var reportedTemperature: Double
        var faults: Set<SimulatedFault> = []
        // Derived from faults, so the physics step does not search a set.
        var stuck = ZoneValues<Bool>(repeating: false)
        var implausible = ZoneValues<Bool>(repeating: false)
        var failed = ZoneValues<Bool>(repeating: false)
        var anyFailed = false
        var spike = ZoneValues<Spike>(repeating: Spike())
        var stuckTemperature = false
        var extraHeat = 0.0
        var pain = false
        var stuckDump = false
        var runaway = ZoneValues<Double>(repeating: 0)
        var frozen = ZoneValues<Bool>(repeating: false)
        var ventTimeConstant: Double?
        // Per-dt coefficients, recomputed only when dt changes.
        var cachedDt = -1.0
        var inflateAlpha = 0.0, deflateAlpha = 0.0, ventAlpha = 0.0

        mutating func recomputeFaults() {
            stuck = .init(repeating: false)
            implausible = .init(repeating: false)
            failed = .init(repeating: false)
            stuckTemperature = false
            extraHeat = 0
            pain = false
            stuckDump = false
            runaway = .init(repeating: 0)
            frozen = .init(repeating: false)
            ventTimeConstant = nil
            cachedDt = -1  // the vent coefficient may change
            var newSpike = ZoneValues<Spike>(repeating: Spike())
            for fault in faults {
                switch fault {
                case .pressureSpike(let zone, let mmHg, _): newSpike[zone] = Spike(mmHg: mmHg, reads: spike[zone].reads)
                case .stuckPressureSensor(let zone): stuck[zone] = true
                case .implausiblePressure(let zone): implausible[zone] = true
                case .stuckTemperatureSensor: stuckTemperature = true
                case .overheating(let rate): extraHeat += rate
                case .actuatorFailure(let zone): failed[zone] = true
                case .painButton: pain = true
                case .stuckDumpValve: stuckDump = true
                case .runawayPump(let zone, let rate): runaway[zone] += rate
                case .frozenPressureSensor(let zone): frozen[zone] = true
                case .slowVent(let tau): ventTimeConstant = max(tau, parameters.ventTimeConstant)
                }
            }
            spike = newSpike
            anyFailed = Zone.allCases.contains { failed[$0] }
        }
    }

    struct Spike: Sendable, Equatable {
        var mmHg: Double = 0
        var reads: Int = 0
    }

    private let state: Mutex<State>

    public init(seed: UInt64 = 0, parameters: Parameters = Parameters(), motorTemperatureC: Double? = nil) {
        let start = motorTemperatureC ?? parameters.ambientC
        state = Mutex(State(
            parameters: parameters,
            rng: SplitMix64(seed: seed),
            temperature: start,
            reportedTemperature: start
        ))
    }

    // MARK: - MassagerHardware

    public func read(engineTime: Double) -> SensorReadings {
        state.withLock { s in
            let dt = s.lastTime.map { max(0, engineTime - $0) } ?? 0
            s.lastTime = engineTime
            if dt > 0 { Self.advance(&s, dt: dt) }

            for zone in Zone.allCases {
                var measured = s.pressures[zone]
                if s.spike[zone].reads > 0 {
                    measured += s.spike[zone].mmHg
                    s.spike[zone].reads -= 1
                    if s.spike[zone].reads == 0 {
                        s.faults = s.faults.filter { if case .pressureSpike(zone, _, _) = $0 { return false } else { return true } }
                    }
                }
                if s.stuck[zone] { continue }
                s.samples[zone] &+= 1
                if s.frozen[zone] { continue }
                measured += s.parameters.pressureNoiseMMHg * s.rng.nextSigned()
                s.reportedPressures[zone] = s.implausible[zone] ? -50 : max(0, measured)
            }
            if !s.stuckTemperature {
                s.temperatureSample &+= 1
                s.reportedTemperature = s.temperature + s.parameters.temperatureNoiseC * s.rng.nextSigned()
            }
            var fault: HardwareFault?
            if s.anyFailed, let zone = Zone.allCases.first(where: { s.failed[$0] }) {
                fault = HardwareFault(zone: zone, detail: "\(zone.rawValue) actuator does not follow its setpoint")
            }
            return SensorReadings(
                pressuresMMHg: s.reportedPressures, pressureSamples: s.samples,
                motorTemperatureC: s.reportedTemperature, temperatureSample: s.temperatureSample,
                stopButtonPressed: s.pain, hardwareFault: fault
            )
        }
    }

    public func apply(_ command: ActuatorCommand) {
        state.withLock { s in
            s.command = command
            s.released = false
        }
    }

    public func releaseAll() {
        state.withLock { s in
            s.command = .idle
            s.released = true
            s.releaseCount += 1
        }
    }

    // MARK: - Physics

    private static func advance(_ s: inout State, dt: Double) {
        if abs(dt - s.cachedDt) > 1e-9 {  // engine time is ticks × dt: the same dt up to rounding
            s.cachedDt = dt
            s.inflateAlpha = 1 - exp(-dt / s.parameters.inflateTimeConstant)
            s.deflateAlpha = 1 - exp(-dt / s.parameters.deflateTimeConstant)
            s.ventAlpha = s.stuckDump
                ? 1 - exp(-dt / Self.stuckValveLeakSeconds)
                : 1 - exp(-dt / (s.ventTimeConstant ?? s.parameters.ventTimeConstant))
        }
        for zone in Zone.allCases {
            let p = s.pressures[zone]
            if s.runaway[zone] > 0 {
                s.pressures[zone] = min(Self.cellLimitMMHg, p + s.runaway[zone] * dt)
            } else if s.released {
                s.pressures[zone] = p - p * s.ventAlpha
            } else if s.stuckDump, s.command.pressuresMMHg[zone] < p {
                // Deflating goes through the dump valve too: it holds.
                s.pressures[zone] = p - p * s.ventAlpha
            } else if s.failed[zone] {
                continue  // a failed actuator holds whatever pressure it had
            } else {
                let target = s.command.pressuresMMHg[zone]
                let alpha = target > p ? s.inflateAlpha : s.deflateAlpha
                s.pressures[zone] = p + (target - p) * alpha
            }
        }
        let duty = s.released ? 0 : min(1, max(0, s.command.motorDuty))
        let p = s.parameters
        let dT = (p.heatingCPerSecond * duty + s.extraHeat - (s.temperature - p.ambientC) / p.coolingTimeConstant) * dt
        s.temperature += dT
    }

    /// A stuck valve still leaks, this slowly (time constant, s).
    static let stuckValveLeakSeconds = 60.0
    /// What a cell holds before its own relief (a runaway pump stops here).
    static let cellLimitMMHg = 300.0

    // MARK: - Fault injection and inspection

    /// Makes the simulator have `fault` until it is cleared (a pressure
    /// spike clears itself after its reads).
    public func inject(_ fault: SimulatedFault) {
        state.withLock { s in
            if case .pressureSpike(let zone, _, let reads) = fault {
                s.faults = s.faults.filter { if case .pressureSpike(zone, _, _) = $0 { return false } else { return true } }
                s.spike[zone].reads = reads
            }
            s.faults.insert(fault)
            s.recomputeFaults()
        }
    }

    public func clear(_ fault: SimulatedFault) {
        state.withLock { s in
            s.faults.remove(fault)
            if case .pressureSpike(let zone, _, _) = fault { s.spike[zone].reads = 0 }
            s.recomputeFaults()
        }
    }

    public func clearAllFaults() {
        state.withLock { s in
            s.faults = []
            s.spike = .init(repeating: Spike())
            s.recomputeFaults()
        }
    }

    /// Sets the motor temperature directly (tests of cooling and lockout).
    public func setMotorTemperature(_ celsius: Double) {
        state.withLock { $0.temperature = celsius }
    }

    public func snapshot() -> Snapshot {
        state.withLock { s in
            Snapshot(
                pressuresMMHg: s.pressures, motorTemperatureC: s.temperature, released: s.released,
                command: s.command, faults: s.faults, releaseCount: s.releaseCount
            )
        }
    }
}

/// A small, fast, seedable generator (SplitMix64): the same seed gives the
/// same sequence everywhere, so a simulation or a test schedule replays exactly.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    mutating func nextSigned() -> Double {
        Double(next() >> 11) * 0x1.0p-52 - 1
    }
}
