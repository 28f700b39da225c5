import ArgumentParser
import CMosquitto
import FleetTestSupport
import Foundation
import Mosquitto
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Compares the two ways libmosquitto can drive many clients in one process:
/// a `mosquitto_loop_start` thread per client, and our `MQTTEventLoopGroup`
/// (external loop: `mosquitto_socket` + `poll` + `mosquitto_loop_read/write/misc`
/// on a few threads). Each mode runs in a fresh child process so that memory
/// figures don't mix.
struct Connections: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Connect N clients in one process, thread-per-client vs event loop; print time, RSS, threads, idle CPU.")
    @Option(help: "threads (mosquitto_loop_start per client) or loop (MQTTEventLoopGroup).") var mode = "loop"
    @Option(help: "Number of clients.") var clients = 1000
    @Option(help: "Broker port (a private broker is started when absent).") var port: Int?
    @Option(help: "Event-loop threads for --mode loop.") var loopThreads = 2
    @Option(help: "Seconds of idle to measure CPU over.") var idleSeconds = 5

    func run() async throws {
        if let port {
            print(try await measure(mode: mode, clients: clients, port: port, loopThreads: loopThreads, idleSeconds: idleSeconds))
        } else {
            let broker = try await benchBroker()
            defer { broker.stopNow() }
            print(try await connectionComparison(clients: clients, broker: broker))
        }
    }
}

private let connectedCount = Atomic<Int>(0)

struct ConnectionFigures: Codable {
    var mode: String
    var clients: Int
    var connectSeconds: Double
    var rssMiB: Double
    var threads: Int
    var idleCPUPercent: Double
}

func measure(mode: String, clients: Int, port: Int, loopThreads: Int, idleSeconds: Int) async throws -> String {
    ProcessStatistics.raiseOpenFileLimit()
    let clock = ContinuousClock()
    let start = clock.now
    var cleanup: () async -> Void = {}
    switch mode {
    case "threads":
        _ = mosquitto_lib_init()
        var handles: [OpaquePointer] = []
        for i in 0..<clients {
            guard let mosq = mosquitto_new("threads-\(i)-\(getpid())", true, nil) else { throw ValidationError("mosquitto_new failed") }
            _ = mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5)
            mosquitto_connect_v5_callback_set(mosq) { _, _, rc, _, _ in
                if rc == 0 { connectedCount.add(1, ordering: .relaxed) }
            }
            let rc = mosquitto_connect(mosq, "127.0.0.1", Int32(port), 30)
            guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw ValidationError("connect \(i): \(String(cString: mosquitto_strerror(rc)))") }
            let started = mosquitto_loop_start(mosq)
            guard started == MOSQ_ERR_SUCCESS.rawValue else { throw ValidationError("mosquitto_loop_start \(i): \(String(cString: mosquitto_strerror(started)))") }
            handles.append(mosq)
        }
        do {
            try await waitUntil(timeout: .seconds(60), pollEvery: .milliseconds(5), "\(clients) thread-per-client connections") {
                connectedCount.load(ordering: .relaxed) == clients
            }
        } catch {
            throw ValidationError("only \(connectedCount.load(ordering: .relaxed)) of \(clients) thread-per-client connections came up within 60 s")
        }
        cleanup = {
            for mosq in handles {
                _ = mosquitto_disconnect(mosq)
                _ = mosquitto_loop_stop(mosq, false)
                mosquitto_destroy(mosq)
            }
        }
    default:
        let group = MQTTEventLoopGroup(numberOfThreads: loopThreads)
        var list: [MQTTClient] = []
        for i in 0..<clients {
            list.append(try MQTTClient(configuration: MQTTConfiguration(host: "127.0.0.1", port: port, clientID: "loop-\(i)-\(getpid())"), eventLoopGroup: group))
        }
        let all = list
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for client in all { tasks.addTask { try await client.connect() } }
            try await tasks.waitForAll()
        }
        cleanup = { for c in all { await c.shutdown() } }
    }
    let connectSeconds = start.duration(to: clock.now).seconds
    let cpu0 = processCPUSeconds()
    let idleStart = clock.now
    try await Task.sleep(for: .seconds(idleSeconds)) // the measurement window, not a wait for a condition
    let idleCPU = (processCPUSeconds() - cpu0) / idleStart.duration(to: clock.now).seconds * 100
    let (rss, threads) = ProcessStatistics.status()
    await cleanup()
    let figures = ConnectionFigures(mode: mode, clients: clients, connectSeconds: connectSeconds, rssMiB: rss, threads: threads, idleCPUPercent: idleCPU)
    return String(decoding: try JSONEncoder().encode(figures), as: UTF8.self)
}

/// Runs each mode in a child process at `clients` and at a smaller count
/// both can reach, and tabulates them; a mode that cannot connect them all
/// is reported with its reason instead of a figure.
func connectionComparison(clients: Int, broker: MosquittoBroker? = nil) async throws -> String {
    var own: MosquittoBroker?
    if broker == nil { own = try await benchBroker() }
    defer { own?.stopNow() }
    let b = (broker ?? own)!
    var out = "| clients in one process | mode | connect all (s) | RSS (MiB) | threads | idle CPU (% of a core) |\n| ---: | --- | ---: | ---: | ---: | ---: |\n"
    for count in Array(Set([min(300, clients), clients])).sorted() {
        for mode in ["threads", "loop"] {
            let name = mode == "threads" ? "mosquitto_loop_start per client" : "MQTTEventLoopGroup (2 threads)"
            let process = Process()
            process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            process.arguments = ["connections", "--mode", mode, "--clients", "\(count)", "--port", "\(b.port)"]
            let pipe = Pipe()
            let errors = Pipe()
            process.standardOutput = pipe
            process.standardError = errors
            try process.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            if process.terminationStatus == 0, let line = String(data: data, encoding: .utf8)?.split(separator: "\n").last,
               let r = try? JSONDecoder().decode(ConnectionFigures.self, from: Data(line.utf8)) {
                out += "| \(count) | \(name) | \(String(format: "%.2f", r.connectSeconds)) | \(String(format: "%.1f", r.rssMiB)) | \(r.threads) | \(String(format: "%.2f", r.idleCPUPercent)) |\n"
            } else {
                let why = errorText.split(separator: "\n").first.map(String.init) ?? "exit \(process.terminationStatus)"
                out += "| \(count) | \(name) | failed: \(why.replacingOccurrences(of: "Error: ", with: "")) | | | |\n"
            }
        }
    }
    return out
}

func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

