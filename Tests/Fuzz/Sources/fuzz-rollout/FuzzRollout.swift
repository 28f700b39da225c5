// Rollout documents, as the console takes them: any bytes as the API's JSON
// (`decodeCollecting`, which also runs `problems(builtins:)`) and as the
// CLI's YAML file (`json(fromYAML:)`, then the same decoding). Every input
// gives a document or reasons; none traps.
import FleetConsole
import FleetProtocol
import Foundation
import MassageEngine

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    check(bytes)
    if let text = String(validating: bytes, as: UTF8.self),
       let json = try? RolloutDocument.json(fromYAML: text) {
        check(Array(json))
    }
    return 0
}

private func check(_ bytes: [UInt8]) {
    switch RolloutDocument.decodeCollecting(bytes) {
    case .success(let document):
        // The console checks again against its builtins before it runs one.
        _ = document.problems(builtins: ProgramLibrary())
        guard (try? FleetJSON.encode(document)) != nil else { fatalError("an accepted rollout document does not encode") }
    case .failure(let error):
        precondition(!error.reasons.isEmpty, "a refused rollout document without a reason")
    }
}
