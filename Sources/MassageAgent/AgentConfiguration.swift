import FleetProtocol
import FleetSettings
import Foundation
import Logging
import MassageEngine
import Mosquitto
import Yams

/// Everything `massage-agent` runs with, validated. Built from the YAML file
/// (Config/agent.yaml documents every key) and command-line overrides.
public struct AgentConfiguration: Sendable {
    public var site: Identifier
    public var device: Identifier
    public var topicRoot: TopicRoot = .default
    public var broker = BrokerSettings()
    public var dataDirectory: URL
    public var programsDirectory: URL
    public var telemetryIntervalSeconds: Double = 5
    public var usageIntervalSeconds: Double = 60
    public var hardwareSeed: UInt64 = 1
    /// TEST ONLY: the UNIX socket of the simulator's test control
    /// (`hardware.test_control`; `TestControlServer`), nil = off.
    public var testControlSocket: URL?
    /// Lock the agent's memory at start-up (`lock_memory`; `MemoryLock`).
    public var lockMemory = true
    /// The massager driven: the simulator, or a controller board over Modbus.
    public var hardware: HardwareSettings = .simulated
    public var limits = EngineLimits.Overrides()
    public var outbox = OutboxLimits()
    /// Simulated time runs this many times faster (demos, tests).
    public var speed: Double = 1
    /// A start (`start_session`, `schedule_session`) must carry `expires_at`
    /// at most this far ahead: it may not wait long for this device.
    public var maxStartTTLSeconds: Double = 600
    /// `SCHED_FIFO` priority for the engine's control thread (nil: the normal
    /// scheduler). A configuration file gets `defaultRealtimePriority` unless
    /// it sets `realtime_priority: 0`.
    public static let defaultRealtimePriority = 10
    /// `SCHED_FIFO` priority for the engine's control thread (nil: the normal scheduler).
    public var realtimePriority: Int32?

    /// Control ticks per real tick: the speed factor the engine driver runs.
    public var driverSpeed: Int { max(1, Int(speed.rounded())) }
    /// How late a schedule may still start after the device was off.
    public var scheduleGraceSeconds: Double = 60
    public var logLevel: Logger.Level = .info

    public var address: DeviceAddress { DeviceAddress(site: site, device: device) }
    public var clientID: String { "agent-\(site)-\(device)" }

    public init(site: Identifier, device: Identifier, dataDirectory: URL, programsDirectory: URL) {
        self.site = site
        self.device = device
        self.dataDirectory = dataDirectory
        self.programsDirectory = programsDirectory
    }
}

/// Command-line values that override the file.
public struct AgentOverrides: Sendable {
    public var site: String?
    public var device: String?
    public var broker: String?
    public var dataDirectory: String?
    public var speed: Double?
    public var logLevel: String?
    public init(site: String? = nil, device: String? = nil, broker: String? = nil, dataDirectory: String? = nil, speed: Double? = nil, logLevel: String? = nil) {
        self.site = site
        self.device = device
        self.broker = broker
        self.dataDirectory = dataDirectory
        self.speed = speed
        self.logLevel = logLevel
    }
}

extension AgentConfiguration {
    static let knownKeys: [String: Set<String>] = [
        "": ["site", "device", "topic_root", "data_dir", "programs_dir", "broker", "telemetry_interval_s", "usage_interval_s",
             "hardware", "limits", "outbox", "speed", "schedule_grace_s", "log_level", "realtime_priority", "commands", "lock_memory"],
        "commands": ["max_start_ttl_s"],
        "broker": BrokerSettings.keys,
        "broker.tls": BrokerSettings.tlsKeys,
        "hardware": HardwareSettings.keys.union(["test_control"]),
        "limits": ["pressure_ceiling_mmhg", "max_session_minutes", "max_motor_temp_c", "pain_lockout_s"],
        "outbox": ["max_messages", "max_bytes"],
    ]

    /// Loads and validates `file` with `overrides` applied. Every problem is
    /// reported at once, each naming its key. Relative paths in the file are
    /// resolved against the file's directory.
    public static func load(file: URL?, overrides: AgentOverrides = .init()) throws(ConfigurationError) -> AgentConfiguration {
        let source = file?.path ?? "command line"
        var root: [String: Any] = [:]
        if let file {
            let text: String
            do { text = try String(contentsOf: file, encoding: .utf8) } catch {
                throw ConfigurationError(source: source, problems: [.init(key: "", message: "cannot read the file: \(error.localizedDescription)")])
            }
            do {
                guard let loaded = try YAMLLoader.load(yaml: text) else { root = [:]; return try build(root, base: file.deletingLastPathComponent(), source: source, overrides: overrides) }
                guard let dict = loaded as? [String: Any] else {
                    throw ConfigurationError(source: source, problems: [.init(key: "", message: "expected a YAML mapping of keys at the top level")])
                }
                root = dict
            } catch let e as ConfigurationError {
                throw e
            } catch {
                throw ConfigurationError(source: source, problems: [.init(key: "", message: "not valid YAML: \(error)")])
            }
        }
        let base = file?.deletingLastPathComponent() ?? URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        return try build(root, base: base, source: source, overrides: overrides)
    }

    private static func build(_ root: [String: Any], base: URL, source: String, overrides: AgentOverrides) throws(ConfigurationError) -> AgentConfiguration {
        var reader = ConfigReader(root: root, known: knownKeys)
        let siteText = overrides.site ?? reader.string("site")
        let deviceText = overrides.device ?? reader.string("device")
        let site = reader.identifier(siteText, key: "site")
        let device = reader.identifier(deviceText, key: "device")
        let dataDir = overrides.dataDirectory ?? reader.string("data_dir")
        let programsDir = reader.string("programs_dir") ?? "programs"
        if dataDir == nil { reader.problem("data_dir", "required: the directory for the agent's database (e.g. /var/lib/massage-agent)") }

        var config = AgentConfiguration(
            site: site ?? Identifier(rawValue: "invalid")!, device: device ?? Identifier(rawValue: "invalid")!,
            dataDirectory: URL(fileURLWithPath: dataDir ?? ".", relativeTo: base).standardizedFileURL,
            programsDirectory: URL(fileURLWithPath: programsDir, relativeTo: base).standardizedFileURL)

        if let root = reader.string("topic_root") {
            do { config.topicRoot = try TopicRoot(root) } catch { reader.problem("topic_root", error.description) }
        }
        config.broker = BrokerSettings.read(&reader, base: base, override: overrides.broker)
        // Intervals and engine
        if let v = reader.double("telemetry_interval_s", in: DeviceConfig.telemetryIntervalRange) { config.telemetryIntervalSeconds = v }
        if let v = reader.double("usage_interval_s", in: DeviceConfig.usageIntervalRange) { config.usageIntervalSeconds = v }
        config.hardware = HardwareSettings.read(&reader)
        if let seed = reader.int("hardware.seed", in: 0...Int.max) { config.hardwareSeed = UInt64(seed) }
        if let path = reader.string("hardware.test_control") {
            if config.hardware != .simulated { reader.problem("hardware.test_control", "only the simulated hardware has a test control") }
            let socket = URL(fileURLWithPath: path, relativeTo: base).standardizedFileURL
            // sun_path holds 108 bytes with the terminating zero.
            if path.isEmpty || socket.path.utf8.count > 107 {
                reader.problem("hardware.test_control", "expected the path of a UNIX socket to create (at most 107 bytes), got \"\(path)\"")
            } else {
                config.testControlSocket = socket
            }
        }
        if let lock = reader.bool("lock_memory") { config.lockMemory = lock }
        var overridesLimits = EngineLimits.Overrides()
        if let minutes = reader.int("limits.max_session_minutes", in: 1...Int.max) { overridesLimits.maxSessionMinutes = minutes }
        if let temp = reader.double("limits.max_motor_temp_c", in: -100...1000) { overridesLimits.maxMotorTemperatureC = temp }
        if let seconds = reader.int("limits.pain_lockout_s", in: 0...86_400) { overridesLimits.painLockoutSeconds = seconds }
        if let ceilings = reader.value("limits.pressure_ceiling_mmhg") {
            if let dict = ceilings as? [String: Any] {
                var values: [String: Double] = [:]
                for (zone, v) in dict {
                    if let d = (v as? Double) ?? (v as? Int).map(Double.init) { values[zone] = d } else {
                        reader.problem("limits.pressure_ceiling_mmhg.\(zone)", "expected a number of mmHg")
                    }
                }
                overridesLimits.ceilingsMMHg = values
            } else {
                reader.problem("limits.pressure_ceiling_mmhg", "expected a mapping of zone to mmHg, e.g. {calf: 120}")
            }
        }
        do { _ = try EngineLimits(overrides: overridesLimits) } catch {
            for p in error.problems { reader.problem("limits.\(p.key)", p.message) }
        }
        config.limits = overridesLimits
        if let n = reader.int("outbox.max_messages", in: 10...10_000_000) { config.outbox.maxMessages = n }
        if let n = reader.int("outbox.max_bytes", in: 10_000...10_000_000_000) { config.outbox.maxBytes = n }
        if let speed = overrides.speed ?? reader.double("speed", in: 0.01...1000) {
            if (0.01...1000).contains(speed) { config.speed = speed } else { reader.problem("--speed", "expected a number from 0.01 to 1000, got \(speed)") }
        }
        if let grace = reader.double("schedule_grace_s", in: 0...86_400) { config.scheduleGraceSeconds = grace }
        // The control loop runs at a real-time priority unless the file says 0:
        // nothing else on the board may delay a tick (docs/safety.md, H7).
        let priority = reader.int("realtime_priority", in: 0...99) ?? AgentConfiguration.defaultRealtimePriority
        config.realtimePriority = priority == 0 ? nil : Int32(priority)
        if let ttl = reader.double("commands.max_start_ttl_s", in: 10...3600) { config.maxStartTTLSeconds = ttl }
        if let level = overrides.logLevel ?? reader.string("log_level") {
            if let parsed = Logger.Level(rawValue: level) { config.logLevel = parsed } else {
                reader.problem(overrides.logLevel != nil ? "--log-level" : "log_level", "expected one of trace, debug, info, notice, warning, error, critical; got \"\(level)\"")
            }
        }
        reader.checkUnknownKeys()
        if !reader.problems.isEmpty { throw ConfigurationError(source: source, problems: reader.problems) }
        return config
    }
}

