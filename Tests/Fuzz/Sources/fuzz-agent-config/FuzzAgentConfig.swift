// The agent's configuration file: any bytes as Config/agent.yaml must load
// or throw `ConfigurationError` (typed throws make that the only error),
// never trap. The input goes to one temporary file per process.
import Foundation
import MassageAgent

/// The file each input is written to. Created once; libFuzzer runs inputs
/// one at a time on one thread, so a plain global is enough.
nonisolated(unsafe) private var configFile: URL? = nil

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let url: URL
    if let configFile { url = configFile } else {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-agent-config-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        url = dir.appendingPathComponent("agent.yaml")
        configFile = url
        atexit {
            if let configFile { try? FileManager.default.removeItem(at: configFile.deletingLastPathComponent()) }
        }
    }
    do {
        try Data(bytes: data, count: size).write(to: url)
    } catch {
        fatalError("cannot write the fuzz input to \(url.path): \(error)")
    }
    do {
        let config = try AgentConfiguration.load(file: url)
        _ = config.clientID
        _ = config.address.description
    } catch {
        _ = error.description
    }
    return 0
}
