/// The engine's view of a massager: read the sensors, command the
/// actuators, release everything. The engine calls these from its control
/// tick, one at a time (never concurrently), while holding its lock; an
/// implementation must return quickly and must not call back into the engine.
public protocol MassagerHardware: Sendable {
    /// Reads every sensor. `engineTime` is the engine's monotonic control
    /// time in seconds (ticks × tick length; it runs N× faster than real
    /// time at speed N). A real device may ignore it; the simulator
    /// advances its physics to it.
    func read(engineTime: Double) -> SensorReadings

    /// Commands the actuators for the coming tick.
    func apply(_ command: ActuatorCommand)

    /// Opens every valve and stops the motor, now. Used by the safety
    /// supervisor, before it reports anything.
    func releaseAll()
}

/// One reading of every sensor.
public struct SensorReadings: Sendable, Equatable {
    /// Measured pressure per zone (mmHg).
    public var pressuresMMHg: ZoneValues<Double>
    /// Sample counter per pressure sensor: changes with every new sample. A
    /// counter that stops changing means a stale (stuck) sensor.
    public var pressureSamples: ZoneValues<UInt32>
    /// Motor temperature (°C).
    public var motorTemperatureC: Double
    public var temperatureSample: UInt32
    /// The person's pain/stop button.
    public var stopButtonPressed: Bool
    /// A fault the hardware reports about itself (actuator, pump, driver).
    public var hardwareFault: HardwareFault?

    public init(
        pressuresMMHg: ZoneValues<Double> = .init(repeating: 0),
        pressureSamples: ZoneValues<UInt32> = .init(repeating: 0),
        motorTemperatureC: Double = 25,
        temperatureSample: UInt32 = 0,
        stopButtonPressed: Bool = false,
        hardwareFault: HardwareFault? = nil
    ) {
        self.pressuresMMHg = pressuresMMHg
        self.pressureSamples = pressureSamples
        self.motorTemperatureC = motorTemperatureC
        self.temperatureSample = temperatureSample
        self.stopButtonPressed = stopButtonPressed
        self.hardwareFault = hardwareFault
    }
}

/// A fault the hardware reports about itself.
public struct HardwareFault: Sendable, Equatable {
    /// The zone whose actuator failed, or nil for the motor or driver.
    public var zone: Zone?
    public var detail: String

    public init(zone: Zone?, detail: String) {
        self.zone = zone
        self.detail = detail
    }
}

/// What the engine commands for one tick.
public struct ActuatorCommand: Sendable, Equatable {
    /// Pressure setpoint per zone (mmHg); 0 means deflate.
    public var pressuresMMHg: ZoneValues<Double>
    /// The technique whose pattern the motor is running, if any.
    public var technique: Technique?
    /// Motor duty, 0…1.
    public var motorDuty: Double

    public init(pressuresMMHg: ZoneValues<Double>, technique: Technique?, motorDuty: Double) {
        self.pressuresMMHg = pressuresMMHg
        self.technique = technique
        self.motorDuty = motorDuty
    }

    /// Nothing commanded.
    public static let idle = ActuatorCommand(pressuresMMHg: .init(repeating: 0), technique: nil, motorDuty: 0)
}
