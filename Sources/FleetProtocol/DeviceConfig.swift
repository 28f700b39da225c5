import Foundation
import MassageEngine

/// The `config` of a desired config document: what a console may set on a
/// device. Every key is optional (absent: the agent's own default); an
/// unknown key is a rejection naming the key, never ignored.
///
/// This type checks structure and the ranges the contract fixes. Whether
/// the programs are valid for the engine and the ceilings only tighten the
/// engine's hard limits is checked by the agent (and the console, before a
/// rollout) with the engine's validator, through the `semanticCheck` seam of
/// `DesiredConfig.decode(_:semanticCheck:)`.
public struct DeviceConfig: Codable, Sendable, Equatable {
    /// 1–30 (the engine's hard limit is the upper bound of the contract).
    public var maxSessionMinutes: Int?
    /// 0.1–3600 s.
    public var telemetryIntervalSeconds: Double?
    /// 1–86400 s.
    public var usageIntervalSeconds: Double?
    /// 1–10: the intensity of a session started without one.
    public var defaultIntensity: Int?
    /// Programs to add, or to replace when the id exists (at most 200, ids unique).
    public var programs: [ProgramSpec]?
    /// Tighter pressure ceilings in mmHg by zone id (positive; the engine
    /// refuses any above its hard ceiling).
    public var pressureCeilingMMHg: [String: Double]?
    /// A tighter motor temperature limit in °C (positive; the engine refuses
    /// one above its hard limit).
    public var maxMotorTempC: Double?

    public init(maxSessionMinutes: Int? = nil, telemetryIntervalSeconds: Double? = nil,
                usageIntervalSeconds: Double? = nil, defaultIntensity: Int? = nil, programs: [ProgramSpec]? = nil,
                pressureCeilingMMHg: [String: Double]? = nil, maxMotorTempC: Double? = nil)
    {
        self.maxSessionMinutes = maxSessionMinutes
        self.telemetryIntervalSeconds = telemetryIntervalSeconds
        self.usageIntervalSeconds = usageIntervalSeconds
        self.defaultIntensity = defaultIntensity
        self.programs = programs
        self.pressureCeilingMMHg = pressureCeilingMMHg
        self.maxMotorTempC = maxMotorTempC
    }

    public static let maxSessionMinutesRange = 1...30
    public static let telemetryIntervalRange: ClosedRange<Double> = 0.1...3600
    public static let usageIntervalRange: ClosedRange<Double> = 1...86400
    public static let intensityRange = 1...10

    enum CodingKeys: String, CodingKey, CaseIterable {
        case maxSessionMinutes = "max_session_minutes"
        case telemetryIntervalSeconds = "telemetry_interval_s"
        case usageIntervalSeconds = "usage_interval_s"
        case defaultIntensity = "default_intensity"
        case programs
        case pressureCeilingMMHg = "pressure_ceiling_mmhg"
        case maxMotorTempC = "max_motor_temp_c"
    }

    /// The keys a config may have.
    public static let knownKeys: [String] = CodingKeys.allCases.map(\.rawValue)

    /// Decodes every key and throws `ConfigRejection` with every reason at
    /// once, each naming its key (with the path of this config in the
    /// document, e.g. `config.max_session_minutes`).
    public init(from decoder: any Decoder) throws {
        let prefix = dottedPath(nil, decoder.codingPath)
        func path(_ key: String) -> String { prefix.isEmpty ? key : "\(prefix).\(key)" }
        let container: KeyedDecodingContainer<AnyCodingKey>
        do {
            container = try decoder.container(keyedBy: AnyCodingKey.self)
        } catch {
            let found = (try? JSONValue(from: decoder))?.briefDescription ?? "something else"
            throw ConfigRejection(reasons: ["\(prefix.isEmpty ? "config" : prefix): expected an object, got \(found)"])
        }
        var reasons: [String] = container.unknownKeys(known: Self.knownKeys).map {
            "\(path($0)): unknown key; known keys: \(Self.knownKeys.joined(separator: ", "))"
        }
        func raw(_ key: CodingKeys) -> JSONValue? {
            guard let value = try? container.decode(JSONValue.self, forKey: AnyCodingKey(key.rawValue)),
                  !value.isNull
            else { return nil }
            return value
        }
        func int(_ key: CodingKeys, _ range: ClosedRange<Int>) -> Int? {
            guard let value = raw(key) else { return nil }
            guard let v = SpecChecks.int(value, in: range) else {
                reasons.append("\(path(key.rawValue)): expected an integer \(range.lowerBound)–\(range.upperBound), got \(value.briefDescription)")
                return nil
            }
            return v
        }
        func number(_ key: CodingKeys, _ range: ClosedRange<Double>, unit: String) -> Double? {
            guard let value = raw(key) else { return nil }
            guard let v = value.doubleValue, v.isFinite, range.contains(v) else {
                reasons.append("\(path(key.rawValue)): expected a number of \(unit) from \(Self.format(range.lowerBound)) to \(Self.format(range.upperBound)), got \(value.briefDescription)")
                return nil
            }
            return v
        }

        maxSessionMinutes = int(.maxSessionMinutes, Self.maxSessionMinutesRange)
        telemetryIntervalSeconds = number(.telemetryIntervalSeconds, Self.telemetryIntervalRange, unit: "seconds")
        usageIntervalSeconds = number(.usageIntervalSeconds, Self.usageIntervalRange, unit: "seconds")
        defaultIntensity = int(.defaultIntensity, Self.intensityRange)

        programs = nil
        if let value = raw(.programs) {
            let base = path(CodingKeys.programs.rawValue)
            if let items = value.arrayValue {
                if items.count > ProtocolLimits.maxPrograms {
                    reasons.append("\(base): \(items.count) programs; the limit is \(ProtocolLimits.maxPrograms)")
                } else {
                    var specs: [ProgramSpec] = []
                    var firstIndex: [String: Int] = [:]
                    for (index, item) in items.enumerated() {
                        switch SpecChecks.program(item, path: "\(base)[\(index)]") {
                        case .success(let spec):
                            if let first = firstIndex[spec.id] {
                                reasons.append("\(base)[\(index)].id: duplicate program id \(quoted(spec.id)) (also at \(base)[\(first)])")
                            } else {
                                firstIndex[spec.id] = index
                            }
                            specs.append(spec)
                        case .failure(let r):
                            reasons += r.reasons
                        }
                    }
                    programs = specs
                }
            } else {
                reasons.append("\(base): expected an array of programs, got \(value.briefDescription)")
            }
        }

        pressureCeilingMMHg = nil
        if let value = raw(.pressureCeilingMMHg) {
            let base = path(CodingKeys.pressureCeilingMMHg.rawValue)
            if let members = value.objectValue {
                var ceilings: [String: Double] = [:]
                for zone in members.keys.sorted() {
                    let v = members[zone]!
                    if !Identifier.isValid(zone) {
                        reasons.append("\(base).\(zone): expected a zone id matching \(Identifier.rule) as the key")
                    } else if let mmHg = v.doubleValue, mmHg.isFinite, mmHg > 0 {
                        ceilings[zone] = mmHg
                    } else {
                        reasons.append("\(base).\(zone): expected a positive number of mmHg, got \(v.briefDescription)")
                    }
                }
                pressureCeilingMMHg = ceilings
            } else {
                reasons.append("\(base): expected an object of mmHg by zone id, got \(value.briefDescription)")
            }
        }

        maxMotorTempC = nil
        if let value = raw(.maxMotorTempC) {
            if let v = value.doubleValue, v.isFinite, v > 0 {
                maxMotorTempC = v
            } else {
                reasons.append("\(path(CodingKeys.maxMotorTempC.rawValue)): expected a positive number of °C, got \(value.briefDescription)")
            }
        }

        if !reasons.isEmpty { throw ConfigRejection(reasons: reasons) }
    }

    private static func format(_ value: Double) -> String {
        value.rounded() == value ? String(Int(value)) : String(value)
    }
}

/// `{root}/{site}/{device}/config/desired` (console → agent, QoS 1,
/// retained): `{ "version": N, "config": {…} }`. Versions are monotonic
/// (≥ 1); an agent ignores, and reports, a version below the applied one.
public struct DesiredConfig: Codable, Sendable, Equatable {
    public var version: UInt64
    public var config: DeviceConfig

    public init(version: UInt64, config: DeviceConfig) {
        self.version = version
        self.config = config
    }

    public static let knownKeys = ["version", "config"]

    /// Throws `ConfigRejection` with every reason (and the version, when it
    /// could be read, so the rejection can be reported against it).
    public init(from decoder: any Decoder) throws {
        let container: KeyedDecodingContainer<AnyCodingKey>
        do {
            container = try decoder.container(keyedBy: AnyCodingKey.self)
        } catch {
            let found = (try? JSONValue(from: decoder))?.briefDescription ?? "something else"
            throw ConfigRejection(reasons: ["expected a desired config object {\"version\", \"config\"}, got \(found)"])
        }
        var reasons = container.unknownKeys(known: Self.knownKeys).map {
            "\($0): unknown key; a desired config has version, config"
        }
        var version: UInt64?
        if let raw = try? container.decode(JSONValue.self, forKey: AnyCodingKey("version")) {
            if case .integer(let v) = raw, v >= 1, UInt64(v) <= ProtocolLimits.maxInteger {
                version = UInt64(v)
            } else if case .integer(let v) = raw, v >= 1 {
                reasons.append("version: expected an integer 1–\(ProtocolLimits.maxInteger) (2^53), got \(v)")
            } else {
                reasons.append("version: expected a positive integer, got \(raw.briefDescription)")
            }
        } else {
            reasons.append("missing field \"version\"")
        }
        var config: DeviceConfig?
        if container.contains(AnyCodingKey("config")) {
            do {
                config = try container.decode(DeviceConfig.self, forKey: AnyCodingKey("config"))
            } catch let rejection as ConfigRejection {
                reasons += rejection.reasons
            } catch let error as DecodingError {
                reasons.append(error.readableMessage(root: nil))
            }
        } else {
            reasons.append("missing field \"config\"")
        }
        guard reasons.isEmpty, let version, let config else {
            throw ConfigRejection(version: version, reasons: reasons)
        }
        self.version = version
        self.config = config
    }

    /// Decodes a desired config payload and runs `semanticCheck` (the
    /// engine's validation: programs, ceilings against hard limits) on a
    /// structurally valid config. Never traps; the rejection carries every
    /// reason, each naming its key, and the version when it was readable.
    public static func decode<Bytes: Collection<UInt8>>(
        _ bytes: Bytes, semanticCheck: (DeviceConfig) -> [String] = { _ in [] }
    ) -> Result<DesiredConfig, ConfigRejection> {
        let value: JSONValue
        switch FleetJSON.parse(bytes) {
        case .failure(let error): return .failure(ConfigRejection(reasons: [error.message]))
        case .success(let v): value = v
        }
        let desired: DesiredConfig
        do {
            desired = try value.decode(DesiredConfig.self)
        } catch let rejection as ConfigRejection {
            return .failure(rejection)
        } catch {
            return .failure(ConfigRejection(version: value["version"]?.intValue.flatMap { UInt64(exactly: $0) },
                                            reasons: ["\(error)"]))
        }
        let semantic = semanticCheck(desired.config)
        if !semantic.isEmpty { return .failure(ConfigRejection(version: desired.version, reasons: semantic)) }
        return .success(desired)
    }
}

/// Why a desired config was refused: every reason, each naming its key.
public struct ConfigRejection: Error, Sendable, Equatable, CustomStringConvertible {
    /// The desired version, when it could be read.
    public var version: UInt64?
    public var reasons: [String]

    public init(version: UInt64? = nil, reasons: [String]) {
        self.version = version
        self.reasons = reasons
    }

    public var description: String { reasons.joined(separator: "; ") }

    /// The `config/reported` body for this rejection.
    public func reported(appliedVersion: UInt64?) -> ReportedConfig {
        ReportedConfig(version: version ?? 0, state: .rejected, appliedVersion: appliedVersion,
                       error: reasons.count == 1 ? reasons[0] : "\(reasons.count) problems: \(reasons[0]); …",
                       reasons: reasons)
    }
}
