// Desired-config validation, as the agent runs it for `config/desired`:
// decode, resolve against the device file and the built-in programs, then
// the self-check. Every input must give a config or a rejection with
// reasons, whose `config/reported` body encodes. Each input is checked
// against two devices: Config/agent.yaml with the built-in programs, and one
// whose file sets its own (tighter) limits.
import FleetProtocol
import Foundation
import MassageAgent
import MassageEngine

/// The repository root, from this file's place in Tests/Fuzz/Sources/<target>/.
private let repository = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

private struct Device: Sendable {
    var file: AgentConfiguration
    var builtins: ProgramLibrary
}

private let devices: [Device] = {
    do {
        let file = try AgentConfiguration.load(file: repository.appendingPathComponent("Config/agent.yaml"))
        let limits = (try? EngineLimits(overrides: file.limits)) ?? .default
        let builtins = try ProgramLibrary.load(directory: repository.appendingPathComponent("Config/programs"), limits: limits)
        var tight = file
        tight.limits = EngineLimits.Overrides()
        tight.limits.maxSessionMinutes = 20
        tight.limits.maxMotorTemperatureC = 50
        tight.limits.ceilingsMMHg = ["calf": 100, "sole": 90]
        return [Device(file: file, builtins: builtins), Device(file: tight, builtins: ProgramLibrary())]
    } catch {
        fatalError("the fuzz target cannot load the repository's agent config and programs from \(repository.path): \(error)")
    }
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    for device in devices {
        switch ConfigValidation.validateDesired(bytes, file: device.file, builtins: device.builtins) {
        case .success(let desired):
            guard let encoded = try? FleetJSON.encode(desired) else { fatalError("an accepted desired config does not encode") }
            _ = encoded
        case .failure(let rejection):
            precondition(!rejection.reasons.isEmpty, "a rejection without a reason")
            guard (try? FleetJSON.encode(rejection.reported(appliedVersion: 1))) != nil else {
                fatalError("a rejection's config/reported body does not encode: \(rejection)")
            }
        }
    }
    return 0
}
