import FleetProtocol
import Foundation
import Logging
import MassageEngine

/// The desired configuration this device runs, persisted in the data
/// directory with write-then-rename so a crash never leaves half a file.
struct AppliedConfig: Sendable, Equatable, Codable {
    var version: UInt64
    var config: DeviceConfig

    static let fileName = "applied-config.json"

    static func load(from directory: URL, logger: Logger) -> AppliedConfig {
        let url = directory.appendingPathComponent(fileName)
        guard let data = try? Data(contentsOf: url) else { return AppliedConfig(version: 0, config: DeviceConfig()) }
        do {
            return try JSONDecoder().decode(AppliedConfig.self, from: data)
        } catch {
            logger.error("the applied configuration file is unreadable; starting without it", metadata: ["file": "\(url.path)", "error": "\(error)"])
            return AppliedConfig(version: 0, config: DeviceConfig())
        }
    }

    func save(to directory: URL) throws {
        let url = directory.appendingPathComponent(Self.fileName)
        let temporary = directory.appendingPathComponent(Self.fileName + ".tmp")
        try JSONEncoder().encode(self).write(to: temporary, options: [])
        // rename(2) is atomic: readers see the old file or the new one.
        guard rename(temporary.path, url.path) == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path])
        }
    }
}

/// A desired configuration turned into what the engine runs: the file's
/// limits tightened by it, and the programs with its additions.
struct ResolvedConfig: Sendable {
    var limits: EngineLimits
    var programs: ProgramLibrary

    /// Validation: the limits only tighten (below the hard limits and the
    /// device file's own), and every added program is valid under them.
    /// Throws every reason at once.
    init(validating config: DeviceConfig, file: AgentConfiguration, fileLimits: EngineLimits, builtins: ProgramLibrary) throws(ConfigRejection) {
        var reasons: [String] = []
        var overrides = file.limits
        // The device file's own limits, where it sets them, bound a desired
        // config; otherwise the engine's hard limits do (EngineLimits checks those).
        if let minutes = config.maxSessionMinutes {
            if let own = file.limits.maxSessionMinutes, minutes > own {
                reasons.append("config.max_session_minutes: \(minutes) is above this device's limit of \(own) minutes; configuration may only tighten it")
            } else {
                overrides.maxSessionMinutes = minutes
            }
        }
        if let temp = config.maxMotorTempC {
            if let own = file.limits.maxMotorTemperatureC, temp > own {
                reasons.append("config.max_motor_temp_c: \(temp) °C is above this device's limit of \(own) °C; configuration may only tighten it")
            } else {
                overrides.maxMotorTemperatureC = temp
            }
        }
        if let ceilings = config.pressureCeilingMMHg {
            var merged = overrides.ceilingsMMHg ?? [:]
            for (zoneID, value) in ceilings.sorted(by: { $0.key < $1.key }) {
                if let own = file.limits.ceilingsMMHg?[zoneID], value > own {
                    reasons.append("config.pressure_ceiling_mmhg.\(zoneID): \(value) mmHg is above this device's ceiling of \(own) mmHg; configuration may only lower it")
                } else {
                    merged[zoneID] = value
                }
            }
            overrides.ceilingsMMHg = merged
        }
        var limits = fileLimits
        do { limits = try EngineLimits(overrides: overrides) } catch {
            reasons += error.problems.map { "config.\($0.key): \($0.message)" }
        }
        var programs = builtins
        if let added = config.programs, !added.isEmpty {
            do { programs = try builtins.adding(added, limits: limits) } catch {
                reasons += error.failures.map { "config.programs: \($0.description)" }
            }
        }
        if !reasons.isEmpty { throw ConfigRejection(reasons: reasons) }
        self.limits = limits
        self.programs = programs
    }

    /// The self-check once applied: every program the device has (built-in
    /// and added) must still run within the new limits.
    func selfCheck() -> [String] {
        do {
            _ = try programs.revalidated(limits: limits)
            return []
        } catch {
            return error.failures.map { "self-check: \($0.description)" }
        }
    }
}

extension AgentService {
    var fileLimits: EngineLimits { (try? EngineLimits(overrides: configuration.limits)) ?? .default }

    func resolve(_ config: DeviceConfig) throws(ConfigRejection) -> ResolvedConfig {
        try ResolvedConfig(validating: config, file: configuration, fileLimits: fileLimits, builtins: builtinPrograms)
    }

    /// A retained `config/desired` arrived (at every reconnect too).
    func handleDesiredConfig(_ payload: [UInt8]) async {
        if payload.isEmpty { return } // a cleared retained message
        let applied = appliedVersion
        let decoded = DesiredConfig.decode(payload) { config in
            do { _ = try self.resolve(config); return [] } catch let error as ConfigRejection { return error.reasons } catch { return ["\(error)"] }
        }
        switch decoded {
        case .failure(let rejection):
            logger.warning("desired config rejected", metadata: ["config.version": "\(rejection.version.map { "\($0)" } ?? "?")", "reasons": "\(rejection.reasons)"])
            await report(rejection.reported(appliedVersion: applied))
            await enqueue(Event(type: .configRejected, message: rejection.description, configVersion: rejection.version, reasons: rejection.reasons), topic: topics.events)
        case .success(let desired):
            if desired.version == applied, applied > 0 {
                await republishReported()
                return
            }
            if desired.version < applied {
                logger.notice("ignored an older desired config", metadata: ["config.version": "\(desired.version)", "config.applied": "\(applied)"])
                await report(ReportedConfig(version: applied, state: .applied, appliedVersion: applied,
                                      error: "ignored desired version \(desired.version): older than the applied version \(applied)"))
                return
            }
            if engine.telemetry().state != .idle {
                state.withLock { $0.pendingDesired = desired }
                logger.info("desired config waits for the running session to end", metadata: ["config.version": "\(desired.version)"])
                await report(ReportedConfig(version: desired.version, state: .pending, appliedVersion: applied))
                return
            }
            await apply(desired)
        }
    }

    /// Applies a config that waited for a session to end (if any).
    func applyPendingConfig() async {
        guard engine.telemetry().state == .idle else { return }
        guard let desired = state.withLock({ s -> DesiredConfig? in defer { s.pendingDesired = nil }; return s.pendingDesired }) else { return }
        await apply(desired)
    }

    private func apply(_ desired: DesiredConfig) async {
        let previous = state.withLock { $0.applied }
        let resolved: ResolvedConfig
        do { resolved = try resolve(desired.config) } catch {
            await report(error.reported(appliedVersion: previous.version))
            return
        }
        let next = AppliedConfig(version: desired.version, config: desired.config)
        do {
            try next.save(to: configuration.dataDirectory)
            try engine.replaceLimits(resolved.limits)
        } catch {
            logger.error("could not apply the desired config", metadata: ["error": "\(error)"])
            try? previous.save(to: configuration.dataDirectory)
            await report(ReportedConfig(version: desired.version, state: .rejected, appliedVersion: previous.version, error: "could not apply: \(error)"))
            return
        }
        engine.replacePrograms(resolved.programs)
        state.withLock { $0.applied = next }

        let problems = resolved.selfCheck() + engine.faults.map { "self-check: fault \($0.description)" }
        if !problems.isEmpty {
            logger.warning("desired config failed the self-check; rolling back", metadata: ["config.version": "\(desired.version)", "problems": "\(problems)"])
            let back = (try? resolve(previous.config)) ?? (try? resolve(DeviceConfig()))
            try? previous.save(to: configuration.dataDirectory)
            if let back {
                try? engine.replaceLimits(back.limits)
                engine.replacePrograms(back.programs)
            }
            state.withLock { $0.applied = previous }
            await report(ReportedConfig(version: desired.version, state: .rolledBack, appliedVersion: previous.version,
                                  error: problems.joined(separator: "; "), reasons: problems))
            await enqueue(Event(type: .configRolledBack, message: problems.joined(separator: "; "), configVersion: desired.version, reasons: problems), topic: topics.events)
            return
        }
        logger.info("desired config applied", metadata: ["config.version": "\(desired.version)"])
        await report(ReportedConfig(version: desired.version, state: .applied, appliedVersion: desired.version))
        await enqueue(Event(type: .configApplied, configVersion: desired.version), topic: topics.events)
        await publishStatus()
        await publishTelemetryNow()
    }

    func report(_ reported: ReportedConfig) async {
        state.withLock { $0.lastReported = reported }
        await enqueue(reported, topic: topics.configReported)
    }

    func republishReported() async {
        let last = state.withLock { s in s.lastReported ?? ReportedConfig(version: s.applied.version, state: .applied, appliedVersion: s.applied.version) }
        await enqueue(last, topic: topics.configReported)
    }
}
