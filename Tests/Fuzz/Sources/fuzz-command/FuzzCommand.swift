// Command decoding, as the agent does it for every `cmd` message: any bytes
// must give either a command with its typed request or a rejection whose
// reply encodes; a decoded command must survive a round trip through its
// own encoding (the console encodes what the agent decodes).
import FleetProtocol
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    switch decodeCommand(bytes) {
    case .success(let incoming):
        let command = incoming.command
        _ = command.expiryError(now: Date(timeIntervalSince1970: 1_800_000_000))
        guard let encoded = try? FleetJSON.encode(command) else {
            fatalError("a decoded command does not encode: \(command)")
        }
        switch decodeCommand(Array(encoded)) {
        case .success(let again):
            precondition(again.command.id == command.id && again.command.action == command.action,
                         "a command changed in a round trip: \(command) became \(again.command)")
            precondition(again.request == incoming.request,
                         "a request changed in a round trip: \(incoming.request) became \(again.request)")
        case .failure(let rejection):
            fatalError("a decoded command's own encoding is refused: \(rejection); \(String(decoding: encoded, as: UTF8.self))")
        }
        _ = try? FleetJSON.encode(CommandReply.success(id: command.id))
    case .failure(let rejection):
        _ = rejection.description
        guard let reply = try? FleetJSON.encode(rejection.reply) else {
            fatalError("a rejection's reply does not encode: \(rejection)")
        }
        guard let back = try? FleetJSON.decode(CommandReply.self, from: Array(reply)).get(), !back.ok else {
            fatalError("a rejection's reply does not decode: \(String(decoding: reply, as: UTF8.self))")
        }
    }
    return 0
}
