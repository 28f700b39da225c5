// The console's ingest of any topic and payload (`ConsoleCore.receive`), as
// if the broker delivered it: nothing malformed may trap, and what was
// ingested must still flush to the database and answer the API's queries.
//
// Input layout: byte 0 picks the topic and the retain flag, the rest is the
// payload. Bits 0-2: 0-5 a device topic of the contract (status, telemetry,
// events, usage, config/reported, config/desired), 6 the console's reply
// topic, 7 a raw topic (the payload's first line; the rest is the payload).
// Bits 4-5 pick one of four devices, so messages build up state per device
// (sequences, sessions, usage) the way a real fleet does. Bit 3: retained.
//
// One console per process, with a temporary SQLite file; its MQTT client is
// created but never started, so nothing connects.
@testable import FleetConsole
import FleetProtocol
import Foundation
import Logging
import Mosquitto

private let kinds = ["status", "telemetry", "events", "usage", "config/reported", "config/desired"]
private let addresses = [("s1", "d1"), ("s1", "d2"), ("s2", "d1"), ("s2", "d-2")]
private let operatorPrincipal = Principal(name: "fuzz", role: .admin)

/// The console and the input count. libFuzzer runs inputs one at a time on
/// one thread, so plain globals are enough.
nonisolated(unsafe) private var console: ConsoleCore? = nil
nonisolated(unsafe) private var inputs = 0

/// The console's temporary directory, removed when libFuzzer exits.
private let consoleDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-ingest-\(getpid())")

private func makeConsole() -> ConsoleCore {
    let dir = consoleDirectory
    try? FileManager.default.removeItem(at: dir)
    atexit { try? FileManager.default.removeItem(at: consoleDirectory) }
    do {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var logger = Logger(label: "fuzz-ingest")
        logger.logLevel = .critical
        return try ConsoleCore(configuration: ConsoleConfiguration(databasePath: dir.appendingPathComponent("console.sqlite").path), logger: logger)
    } catch {
        fatalError("cannot create the console under \(dir.path): \(error)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let core = console ?? makeConsole()
    console = core
    let selector = data[0]
    var payload = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let topic: String
    let mode = Int(selector & 0x07)
    let (site, device) = addresses[Int(selector >> 4) & 0x03]
    switch mode {
    case 0..<kinds.count:
        topic = "massage/v1/\(site)/\(device)/\(kinds[mode])"
    case 6:
        topic = core.replyTopic
    default:
        let line = payload.firstIndex(of: UInt8(ascii: "\n")) ?? payload.endIndex
        topic = String(decoding: payload[..<line], as: UTF8.self)
        payload = Array(payload[min(line + 1, payload.endIndex)...])
    }
    core.receive(MQTTMessage(topic: topic, payload: payload, qos: .atLeastOnce, retain: selector & 0x08 != 0))

    inputs += 1
    if inputs % 16 == 0 { core.flushNow(includingDevices: inputs % 256 == 0) }
    if inputs % 256 == 0 {
        core.evaluateHealth(now: Date())
        _ = try? core.devices(for: operatorPrincipal)
        _ = core.sites(for: operatorPrincipal)
        _ = try? core.usage(for: operatorPrincipal)
        for (s, d) in addresses { _ = try? core.device(site: s, device: d, for: operatorPrincipal) }
    }
    return 0
}
