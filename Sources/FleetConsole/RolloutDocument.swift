import FleetProtocol
import Foundation
import MassageEngine
import Yams

/// A staged configuration rollout as an operator writes it (YAML for the
/// CLI, JSON for the API; Config/rollouts/example.yaml documents every key).
public struct RolloutDocument: Codable, Sendable, Equatable {
    public struct Targets: Codable, Sendable, Equatable {
        public var sites: [String]?
        public var devices: [String]?
        public var all: Bool?
    }

    public struct Waves: Codable, Sendable, Equatable {
        public var canary: Int
        public var percentages: [Double]?
        public var factor: Double?
    }

    public struct Threshold: Codable, Sendable, Equatable {
        public var percent: Double
        public var minExecuted: Int
        public var action: String

        enum CodingKeys: String, CodingKey { case percent, minExecuted = "min_executed", action }
    }

    public struct Window: Codable, Sendable, Equatable {
        public var days: [String]
        public var start: String
        public var end: String
    }

    public var name: String
    public var config: DeviceConfig
    public var targets: Targets
    public var waves: Waves
    public var bakeSeconds: Double?
    public var errorThreshold: Threshold?
    public var applyTimeoutSeconds: Double?
    public var maintenanceWindow: Window?
    public var onAbort: String?
    public var lifetimeHours: Double?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, config, targets, waves
        case bakeSeconds = "bake_s", errorThreshold = "error_threshold", applyTimeoutSeconds = "apply_timeout_s"
        case maintenanceWindow = "maintenance_window", onAbort = "on_abort", lifetimeHours = "lifetime_h"
    }

    static let knownKeys = Set(CodingKeys.allCases.map(\.rawValue))

    public init(name: String, config: DeviceConfig, targets: Targets, waves: Waves, bakeSeconds: Double? = nil,
                errorThreshold: Threshold? = nil, applyTimeoutSeconds: Double? = nil, maintenanceWindow: Window? = nil,
                onAbort: String? = nil, lifetimeHours: Double? = nil) {
        self.name = name
        self.config = config
        self.targets = targets
        self.waves = waves
        self.bakeSeconds = bakeSeconds
        self.errorThreshold = errorThreshold
        self.applyTimeoutSeconds = applyTimeoutSeconds
        self.maintenanceWindow = maintenanceWindow
        self.onAbort = onAbort
        self.lifetimeHours = lifetimeHours
    }

    public init(from decoder: any Decoder) throws {
        let keys = try decoder.container(keyedBy: AnyCodingKey.self).allKeys.map(\.stringValue)
        if let unknown = keys.first(where: { !Self.knownKeys.contains($0) }) {
            throw DecodingError.dataCorrupted(.init(codingPath: [AnyCodingKey(unknown)], debugDescription: "expected no such key: \"\(unknown)\" is not a rollout document key (known: \(Self.knownKeys.sorted().joined(separator: ", ")))"))
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        config = try c.decode(DeviceConfig.self, forKey: .config)
        targets = try c.decode(Targets.self, forKey: .targets)
        waves = try c.decode(Waves.self, forKey: .waves)
        bakeSeconds = try c.decodeIfPresent(Double.self, forKey: .bakeSeconds)
        errorThreshold = try c.decodeIfPresent(Threshold.self, forKey: .errorThreshold)
        applyTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .applyTimeoutSeconds)
        maintenanceWindow = try c.decodeIfPresent(Window.self, forKey: .maintenanceWindow)
        onAbort = try c.decodeIfPresent(String.self, forKey: .onAbort)
        lifetimeHours = try c.decodeIfPresent(Double.self, forKey: .lifetimeHours)
    }

    /// Decodes a document from JSON and, when it cannot, names every reason
    /// at once: unknown and missing keys, every problem of its config, and
    /// the first type error of the rest; then the semantic problems.
    public static func decodeCollecting(_ bytes: [UInt8]) -> Result<RolloutDocument, RolloutDocumentError> {
        let value: JSONValue
        switch FleetJSON.parse(bytes) {
        case .failure(let e): return .failure(.init(reasons: [e.message]))
        case .success(let v): value = v
        }
        guard case .object(var fields) = value else { return .failure(.init(reasons: ["expected a JSON object with the rollout document's keys"])) }
        var reasons: [String] = []
        for key in fields.keys.sorted() where !knownKeys.contains(key) {
            reasons.append("\(key): unknown key; expected one of: \(knownKeys.sorted().joined(separator: ", "))")
        }
        for key in ["name", "config", "targets", "waves"] where fields[key] == nil { reasons.append("\(key): required") }
        if let config = fields["config"] {
            let wrapped = JSONValue.object(["version": .integer(1), "config": config])
            if let data = try? FleetJSON.encode(wrapped), case .failure(let rejection) = DesiredConfig.decode(Array(data)) {
                reasons += rejection.reasons.map { $0.hasPrefix("config") ? $0 : "config: \($0)" }
                fields["config"] = .object([:]) // the rest is still checked below
                // The limits that did parse are still checked against the engine's.
                var ceilings: [String: Double] = [:]
                if case .object(let c)? = config["pressure_ceiling_mmhg"] {
                    for (zone, v) in c { if let d = v.doubleValue { ceilings[zone] = d } }
                }
                let partial = DeviceConfig(pressureCeilingMMHg: ceilings.isEmpty ? nil : ceilings, maxMotorTempC: config["max_motor_temp_c"]?.doubleValue)
                reasons += configProblems(partial, builtins: ProgramLibrary())
            }
        }
        for key in fields.keys where !knownKeys.contains(key) { fields[key] = nil }
        // Decode what is left and check its semantics too, so every problem shows at once.
        if let data = try? FleetJSON.encode(JSONValue.object(fields)) {
            switch FleetJSON.decode(RolloutDocument.self, from: Array(data)) {
            case .success(let doc): reasons += doc.problems(builtins: ProgramLibrary())
            case .failure(let e): if !e.message.contains("missing field") { reasons.append(e.message) }
            }
        }
        if !reasons.isEmpty { return .failure(.init(reasons: reasons)) }
        switch FleetJSON.decode(RolloutDocument.self, from: bytes) {
        case .failure(let e): return .failure(.init(reasons: [e.message]))
        case .success(let doc): return .success(doc)
        }
    }

    /// A YAML rollout file as JSON for the API (the CLI sends this).
    public static func json(fromYAML text: String) throws -> Data {
        guard let loaded = try YAMLLoader.load(yaml: text) else { throw ConsoleError.badRequest("the rollout file is empty") }
        guard JSONSerialization.isValidJSONObject(loaded) else { throw ConsoleError.badRequest("the rollout file must be a YAML mapping of keys") }
        return try JSONSerialization.data(withJSONObject: loaded, options: [.sortedKeys])
    }
    static let days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    /// Every reason the document cannot run, each naming its key. The
    /// configuration is checked against the engine's hard limits and program
    /// rules before any device sees it.
    public func problems(builtins: ProgramLibrary) -> [String] {
        var out: [String] = []
        if name.trimmingCharacters(in: .whitespaces).isEmpty { out.append("name: required") }
        if targets.all != true && (targets.sites ?? []).isEmpty && (targets.devices ?? []).isEmpty {
            out.append("targets: give all: true, sites, or devices")
        }
        for site in targets.sites ?? [] where !Identifier.isValid(site) { out.append("targets.sites: \"\(site)\" is not a valid site id") }
        for d in targets.devices ?? [] {
            let parts = d.split(separator: "/").map(String.init)
            if parts.count != 2 || (try? DeviceAddress(site: parts[0], device: parts[1])) == nil {
                out.append("targets.devices: \"\(d)\" is not a site/device address")
            }
        }
        if waves.canary < 1 { out.append("waves.canary: expected at least 1 device, got \(waves.canary)") }
        switch (waves.percentages, waves.factor) {
        case (nil, nil): out.append("waves: give percentages (e.g. [10, 50, 100]) or factor (e.g. 2)")
        case (.some, .some): out.append("waves: give percentages or factor, not both")
        case (let p?, nil):
            if p.isEmpty || p.last != 100 { out.append("waves.percentages: expected cumulative percentages ending at 100, got \(p)") }
            if zip(p, p.dropFirst()).contains(where: { $0 >= $1 }) || p.contains(where: { $0 <= 0 || $0 > 100 }) {
                out.append("waves.percentages: expected increasing values in (0, 100], got \(p)")
            }
        case (nil, let f?):
            if !(f > 1 && f <= 100) { out.append("waves.factor: expected a number above 1 (each wave that many times the previous), got \(f)") }
        }
        if let b = bakeSeconds, !(0...86_400).contains(b) { out.append("bake_s: expected 0 to 86400 seconds, got \(b)") }
        if let t = applyTimeoutSeconds, !(1...86_400).contains(t) { out.append("apply_timeout_s: expected 1 to 86400 seconds, got \(t)") }
        if let l = lifetimeHours, !(0.01...720).contains(l) { out.append("lifetime_h: expected 0.01 to 720 hours, got \(l)") }
        if let e = errorThreshold {
            if !(0...100).contains(e.percent) { out.append("error_threshold.percent: expected 0 to 100, got \(e.percent)") }
            if e.minExecuted < 1 { out.append("error_threshold.min_executed: expected at least 1, got \(e.minExecuted)") }
            if !["pause", "abort"].contains(e.action) { out.append("error_threshold.action: expected pause or abort, got \"\(e.action)\"") }
        }
        if let o = onAbort, !["rollback", "leave"].contains(o) { out.append("on_abort: expected rollback or leave, got \"\(o)\"") }
        if let w = maintenanceWindow {
            for d in w.days where !Self.days.contains(d) { out.append("maintenance_window.days: \"\(d)\" is not one of \(Self.days.joined(separator: ", "))") }
            if w.days.isEmpty { out.append("maintenance_window.days: expected at least one day") }
            for (k, v) in [("start", w.start), ("end", w.end)] where Self.minutes(v) == nil {
                out.append("maintenance_window.\(k): expected HH:MM (24 h), got \"\(v)\"")
            }
        }
        out += Self.configProblems(config, builtins: builtins)
        return out
    }

    /// The engine's view of a desired config: limits below the hard limits,
    /// added programs valid, and the built-in programs still valid under them.
    static func configProblems(_ config: DeviceConfig, builtins: ProgramLibrary) -> [String] {
        var out: [String] = []
        let overrides = EngineLimits.Overrides(ceilingsMMHg: config.pressureCeilingMMHg, maxSessionMinutes: config.maxSessionMinutes, maxMotorTemperatureC: config.maxMotorTempC)
        let limits: EngineLimits
        do { limits = try EngineLimits(overrides: overrides) } catch {
            // The engine's key names, in the document's words.
            return error.problems.map { "config.\($0.key.replacingOccurrences(of: "ceilings_mmhg", with: "pressure_ceiling_mmhg")): \($0.message)" }
        }
        if let programs = config.programs, !programs.isEmpty {
            do { _ = try ProgramLibrary().adding(programs, limits: limits) } catch {
                out += error.failures.map { "config.programs: \($0.description)" }
            }
        }
        _ = builtins
        return out
    }

    static func minutes(_ hhmm: String) -> Int? {
        let parts = hhmm.split(separator: ":")
        guard parts.count == 2, let h = Int(parts[0]), let m = Int(parts[1]), (0..<24).contains(h), (0..<60).contains(m) else { return nil }
        return h * 60 + m
    }

    /// Whether `date` falls in the maintenance window in `zone` (windows may cross midnight).
    func windowOpen(at date: Date, in zone: TimeZone) -> Bool {
        guard let w = maintenanceWindow, let start = Self.minutes(w.start), let end = Self.minutes(w.end) else { return true }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let c = calendar.dateComponents([.weekday, .hour, .minute], from: date)
        let now = (c.hour ?? 0) * 60 + (c.minute ?? 0)
        let today = Self.days[((c.weekday ?? 1) - 1) % 7]
        let yesterday = Self.days[((c.weekday ?? 1) + 5) % 7]
        if start <= end { return w.days.contains(today) && now >= start && now < end }
        // Crosses midnight: the evening part belongs to today, the morning part to the day before.
        return (w.days.contains(today) && now >= start) || (w.days.contains(yesterday) && now < end)
    }

    /// Wave sizes for `count` targets: the canary, then the percentages or the factor.
    func waveSizes(count: Int) -> [Int] {
        guard count > 0 else { return [] }
        var sizes = [min(waves.canary, count)]
        var done = sizes[0]
        if let percentages = waves.percentages {
            for p in percentages {
                let upTo = min(count, Int((Double(count) * p / 100).rounded(.up)))
                if upTo > done { sizes.append(upTo - done); done = upTo }
            }
        } else if let factor = waves.factor {
            var next = Double(sizes[0])
            while done < count {
                next *= factor
                let size = min(count - done, max(1, Int(next.rounded())))
                sizes.append(size)
                done += size
            }
        }
        if done < count { sizes.append(count - done) }
        return sizes
    }
}

/// Every reason a rollout document was refused.
public struct RolloutDocumentError: Error, Sendable {
    public var reasons: [String]
}
