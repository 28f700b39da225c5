import MassageEngine

/// The register map shared by the agent's driver (`ModbusMassager`) and the
/// controller board (`ReferenceController`, or a real one): every address,
/// its unit and scaling, in one value. docs/hardware.md shows it as a table
/// and `RegisterMapDocTests` keeps that table equal to `registers`.
///
/// Everything is a holding register (16 bits), so one tick is one read
/// (function 3) of the status block and one write (function 16) of the
/// command block. Registers below `commandStart` are read-only: the
/// controller answers a write to them with exception 2 (illegal address).
public enum RegisterMap {
    /// Register 0 holds this ("MF"): a device that answers something else
    /// is not a massager controller.
    public static let identityMagic: UInt16 = 0x4D46
    /// Register 1: the layout below. A controller with another version is refused.
    public static let mapVersion: UInt16 = 1

    // MARK: Status block, read every tick (0 ..< 20)
    public static let identity: Int32 = 0
    public static let version: Int32 = 1
    /// Changes on every start of the controller; a change seen while running means it restarted.
    public static let bootCounter: Int32 = 2
    /// Bit 0: stop button latched; bit 1: outputs released.
    public static let status: Int32 = 3
    /// `FaultBits`, latched by the controller.
    public static let faults: Int32 = 4
    /// The last command sequence number the controller accepted.
    public static let sequenceEcho: Int32 = 5
    public static func pressure(_ zone: Zone) -> Int32 { 6 + Int32(zone.index) }
    public static func pressureSamples(_ zone: Zone) -> Int32 { 12 + Int32(zone.index) }
    public static let motorTemperature: Int32 = 18
    public static let temperatureSamples: Int32 = 19
    /// Registers read on every tick: `status`…`temperatureSamples`.
    public static let tickReadCount: Int32 = 20

    // MARK: Configuration block, read at start-up (20 ..< 27)
    public static func ceiling(_ zone: Zone) -> Int32 { 20 + Int32(zone.index) }
    public static let watchdogMilliseconds: Int32 = 26
    /// Registers read at start-up: identity through the watchdog.
    public static let startupReadCount: Int32 = 27

    // MARK: Command block, written every tick (32 ..< 42)
    public static let commandStart: Int32 = 32
    /// Incremented by the agent on every write; a write with a new number feeds the watchdog.
    public static let sequence: Int32 = 32
    public static func setpoint(_ zone: Zone) -> Int32 { 33 + Int32(zone.index) }
    /// 0 none, else 1 + the technique's index in `Technique.allCases`.
    public static let technique: Int32 = 39
    /// Motor duty in 0.1 % (0…1000).
    public static let motorDuty: Int32 = 40
    /// 1: open every valve and stop the motor, whatever the setpoints say.
    public static let releaseAll: Int32 = 41
    public static let commandCount: Int32 = 10

    /// Registers the controller serves (the mapping's size).
    public static let registerCount: Int32 = 48

    /// Status register bits.
    public enum StatusBits {
        public static let stopLatched: UInt16 = 1 << 0
        public static let released: UInt16 = 1 << 1
    }

    /// Fault register bits. Each latches in the controller until the stop
    /// button is up and a new command with zero demand (every setpoint 0
    /// and the motor off, or release-all) arrives.
    public enum FaultBits {
        /// No command with a new sequence number within the watchdog timeout while pressure was on: the controller released.
        public static let watchdog: UInt16 = 1 << 0
        /// The stop button was pressed: the controller released.
        public static let stopButton: UInt16 = 1 << 1
        /// A setpoint above the controller's ceiling was written: it was clamped.
        public static let setpointClamped: UInt16 = 1 << 2
        /// Measured pressure above the controller's ceiling for 100 ms: the controller released.
        public static let overpressure: UInt16 = 1 << 3
        /// Bits 8…13: the zone's actuator does not follow its setpoint.
        public static func actuator(_ zone: Zone) -> UInt16 { 1 << (8 + UInt16(zone.index)) }
    }

    // MARK: Scaling

    /// mmHg → register, 0.1 mmHg, clamped to 0…6553.5 (setpoints, ceilings).
    public static func encodeTenths(_ value: Double) -> UInt16 {
        guard value.isFinite else { return 0 }
        return UInt16(min(65_535, max(0, (value * 10).rounded())))
    }
    /// Signed 0.1-unit register (pressures, temperature) → value.
    public static func decodeSignedTenths(_ raw: UInt16) -> Double { Double(Int16(bitPattern: raw)) / 10 }
    /// Value → signed 0.1-unit register, clamped to the int16 range.
    public static func encodeSignedTenths(_ value: Double) -> UInt16 {
        guard value.isFinite else { return UInt16(bitPattern: Int16.min) }
        return UInt16(bitPattern: Int16(min(32_767, max(-32_768, (value * 10).rounded()))))
    }
    public static func techniqueCode(_ technique: Technique?) -> UInt16 {
        guard let technique, let i = Technique.allCases.firstIndex(of: technique) else { return 0 }
        return UInt16(i + 1)
    }
    public static func technique(code: UInt16) -> Technique? {
        let i = Int(code) - 1
        return Technique.allCases.indices.contains(i) ? Technique.allCases[i] : nil
    }

    // MARK: The table

    public enum Access: String, Sendable { case read = "R", readWrite = "R/W" }

    public struct Register: Sendable, Equatable {
        public var address: Int32
        public var name: String
        public var unit: String
        public var access: Access
    }

    /// Every register, in address order: what docs/hardware.md's table lists.
    public static let registers: [Register] = {
        var r: [Register] = [
            .init(address: identity, name: "identity", unit: "0x4D46", access: .read),
            .init(address: version, name: "map_version", unit: "1", access: .read),
            .init(address: bootCounter, name: "boot_counter", unit: "count", access: .read),
            .init(address: status, name: "status", unit: "bits", access: .read),
            .init(address: faults, name: "faults", unit: "bits", access: .read),
            .init(address: sequenceEcho, name: "sequence_echo", unit: "count", access: .read),
        ]
        for zone in Zone.allCases { r.append(.init(address: pressure(zone), name: "pressure.\(zone.rawValue)", unit: "0.1 mmHg, signed", access: .read)) }
        for zone in Zone.allCases { r.append(.init(address: pressureSamples(zone), name: "pressure_samples.\(zone.rawValue)", unit: "count", access: .read)) }
        r.append(.init(address: motorTemperature, name: "motor_temperature", unit: "0.1 °C, signed", access: .read))
        r.append(.init(address: temperatureSamples, name: "temperature_samples", unit: "count", access: .read))
        for zone in Zone.allCases { r.append(.init(address: ceiling(zone), name: "ceiling.\(zone.rawValue)", unit: "0.1 mmHg", access: .read)) }
        r.append(.init(address: watchdogMilliseconds, name: "watchdog_ms", unit: "ms", access: .read))
        r.append(.init(address: sequence, name: "sequence", unit: "count", access: .readWrite))
        for zone in Zone.allCases { r.append(.init(address: setpoint(zone), name: "setpoint.\(zone.rawValue)", unit: "0.1 mmHg", access: .readWrite)) }
        r.append(.init(address: technique, name: "technique", unit: "code", access: .readWrite))
        r.append(.init(address: motorDuty, name: "motor_duty", unit: "0.1 %", access: .readWrite))
        r.append(.init(address: releaseAll, name: "release_all", unit: "0/1", access: .readWrite))
        return r
    }()
}
