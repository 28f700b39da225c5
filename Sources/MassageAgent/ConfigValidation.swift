import FleetProtocol
import Foundation
import MassageEngine

/// The agent's validation of a `config/desired` payload, without an agent:
/// what `AgentService` runs when one arrives (decode, then the limits and
/// programs resolved against the device file and the built-in programs),
/// followed by the self-check it runs once the config is applied. For
/// fuzzing and tools; it calls the agent's own code, it does not copy it.
public enum ConfigValidation {
    /// Validates `payload` as the agent with configuration `file` and
    /// built-in programs `builtins` would. Never traps on any input: the
    /// rejection carries every reason, each naming its key.
    public static func validateDesired<Bytes: Collection<UInt8>>(
        _ payload: Bytes, file: AgentConfiguration, builtins: ProgramLibrary
    ) -> Result<DesiredConfig, ConfigRejection> {
        // As `AgentService.fileLimits`: the device file's limits, else the engine's.
        let fileLimits = (try? EngineLimits(overrides: file.limits)) ?? .default
        func resolve(_ config: DeviceConfig) -> Result<ResolvedConfig, ConfigRejection> {
            Result { () throws(ConfigRejection) in
                try ResolvedConfig(validating: config, file: file, fileLimits: fileLimits, builtins: builtins)
            }
        }
        let decoded = DesiredConfig.decode(payload) { config in
            if case .failure(let rejection) = resolve(config) { return rejection.reasons }
            return []
        }
        guard case .success(let desired) = decoded else { return decoded }
        switch resolve(desired.config) {
        case .failure(let rejection):
            return .failure(ConfigRejection(version: desired.version, reasons: rejection.reasons))
        case .success(let resolved):
            let problems = resolved.selfCheck()
            if !problems.isEmpty { return .failure(ConfigRejection(version: desired.version, reasons: problems)) }
        }
        return .success(desired)
    }
}
