// The console's ingest of any topic and payload (`IngestService.receive`), as
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
import Synchronization

private let kinds = ["status", "telemetry", "events", "usage", "config/reported", "config/desired"]
private let addresses = [("s1", "d1"), ("s1", "d2"), ("s2", "d1"), ("s2", "d-2")]
private let operatorPrincipal = Principal(name: "fuzz", role: .admin)

/// The console and the input count. libFuzzer runs inputs one at a time on
/// one thread, so plain globals are enough.
nonisolated(unsafe) private var console: ConsoleCore? = nil
nonisolated(unsafe) private var inputs = 0

/// The console's temporary directory, removed when libFuzzer exits.
private let consoleDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-ingest-\(getpid())")

/// Waits on libFuzzer's thread (outside Swift concurrency) for the console's
/// async work: opening the store, flushing, queries.
private func blocking<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) throws -> T {
    let result = Mutex<Result<T, any Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        let outcome: Result<T, any Error>
        do { outcome = .success(try await work()) } catch { outcome = .failure(error) }
        result.withLock { $0 = outcome }
        done.signal()
    }
    done.wait()
    return try result.withLock { $0! }.get()
}

private func makeConsole() -> ConsoleCore {
    let dir = consoleDirectory
    try? FileManager.default.removeItem(at: dir)
    atexit { try? FileManager.default.removeItem(at: consoleDirectory) }
    do {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var logger = Logger(label: "fuzz-ingest")
        logger.logLevel = .critical
        var configuration = ConsoleConfiguration(databasePath: dir.appendingPathComponent("console.sqlite").path)
        // Millions of inputs from four addresses would empty any real quota
        // within seconds and leave every later input dropped unread: the
        // quota is still checked for each, at a rate the fuzzer cannot reach.
        configuration.deviceQuota.messagesPerSecond = 1e9
        configuration.deviceQuota.bytesPerSecond = 1e12
        let (quiet, settings) = (logger, configuration)
        return try blocking { try await ConsoleCore(configuration: settings, logger: quiet) }
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
        topic = core.ingest.topics.replyTopic
    default:
        let line = payload.firstIndex(of: UInt8(ascii: "\n")) ?? payload.endIndex
        topic = String(decoding: payload[..<line], as: UTF8.self)
        payload = Array(payload[min(line + 1, payload.endIndex)...])
    }
    core.ingest.receive(MQTTMessage(topic: topic, payload: payload, qos: .atLeastOnce, retain: selector & 0x08 != 0))

    inputs += 1
    let count = inputs
    if count % 16 == 0 { try? blocking { await core.persistence.flushNow(includingDevices: count % 256 == 0) } }
    if count % 256 == 0 {
        try? blocking {
            await core.healthMonitor.evaluateHealth(now: Date())
            _ = try? core.queries.devices(for: operatorPrincipal)
            _ = await core.queries.sites(for: operatorPrincipal)
            _ = try? core.queries.usage(for: operatorPrincipal)
            for (s, d) in addresses { _ = try? await core.queries.device(site: s, device: d, for: operatorPrincipal) }
        }
    }
    return 0
}
