import ArgumentParser
import CMosquitto
import FleetTestSupport
import Foundation
import Mosquitto
#if canImport(Glibc)
import Glibc
#endif

/// Measures the Mosquitto module against libmosquitto's own command-line
/// tools, in the same run, on the same private broker. See docs/BENCHMARKS.md.
@main
struct MQTTBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mqtt-bench",
        abstract: "Throughput and connection-scaling benchmarks of the MQTT client against mosquitto_sub / mosquitto_pub.",
        subcommands: [All.self, Receive.self, Publish.self, Connections.self],
        defaultSubcommand: All.self)
}

struct CommonOptions: ParsableArguments {
    /// At most 65,535 for publishing at QoS 1: see `publishBenchmark`.
    @Option(help: "Messages per run (at most 65535 when publishing at QoS 1: mosquitto_pub -l cannot publish more).")
    var messages = 60_000
    @Option(help: "Payload size in bytes.")
    var size = 100
    @Option(help: "Repetitions; the median is reported.")
    var runs = 3
}

/// A broker tuned so that nothing is dropped while a queue is drained.
func benchBroker() async throws -> MosquittoBroker {
    ProcessStatistics.raiseOpenFileLimit()
    return try await MosquittoBroker.start(BrokerOptions(extraConfig: """
        max_queued_messages 0
        max_queued_bytes 0
        queue_qos0_messages true
        max_inflight_messages 20
        """))
}

struct Receive: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Messages/s received: our client vs mosquitto_sub draining the same queued stream.")
    @OptionGroup var options: CommonOptions
    @Option(help: "QoS 0 or 1.") var qos = 0

    func run() async throws {
        let broker = try await benchBroker()
        defer { broker.stopNow() }
        let result = try await receiveBenchmark(broker: broker, qos: QoS(rawValue: qos) ?? .atMostOnce, options: options)
        print(result.line)
    }
}

struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Messages/s published: our client vs mosquitto_pub -l fed the same lines.")
    @OptionGroup var options: CommonOptions
    @Option(help: "QoS 0 or 1.") var qos = 0

    func run() async throws {
        let broker = try await benchBroker()
        defer { broker.stopNow() }
        let result = try await publishBenchmark(broker: broker, qos: QoS(rawValue: qos) ?? .atMostOnce, options: options)
        print(result.line)
    }
}

struct All: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Every benchmark; prints a Markdown table for docs/BENCHMARKS.md.")
    @OptionGroup var options: CommonOptions
    @Option(help: "Clients for the connection-scaling comparison.") var clients = 1000

    func run() async throws {
        let broker = try await benchBroker()
        defer { broker.stopNow() }
        print("libmosquitto \(MQTTClient.libraryVersion); \(ProcessInfo.processInfo.activeProcessorCount) cores; \(options.messages) messages of \(options.size) bytes; median of \(options.runs) runs")
        print("")
        print("| benchmark | ours (msg/s) | reference (msg/s) | ratio |")
        print("| --- | ---: | ---: | ---: |")
        var results: [Comparison] = []
        for qos in [QoS.atMostOnce, .atLeastOnce] {
            for comparison in [try await receiveBenchmark(broker: broker, qos: qos, options: options),
                               try await publishBenchmark(broker: broker, qos: qos, options: options)] {
                print(comparison.line)
                results.append(comparison)
            }
        }
        print("")
        for comparison in results { comparison.result.print() }
        print("")
        print(try await connectionComparison(clients: clients))
    }
}

struct Comparison {
    var name: String
    var ours: Double
    var reference: Double
    var referenceName: String
    var line: String {
        "| \(name) | \(Int(ours)) | \(Int(reference)) (\(referenceName)) | \(String(format: "%.2f", ours / reference))× |"
    }
    /// For deploy/bench.sh: goal ≥ 0.9× the libmosquitto tool, in the same run.
    var result: BenchResult {
        BenchResult("MQTT \(name)", value: ours, unit: "msg/s", reference: reference, referenceName: referenceName, goal: 0.9, on: .ratio, .atLeast)
    }
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted[sorted.count / 2]
}

func payload(size: Int) -> [UInt8] {
    (0..<size).map { UInt8(ascii: "a") + UInt8($0 % 26) }
}

// MARK: Receive

/// Both subscribers get a persistent session, the stream is published while
/// they are away (the broker queues it), then each drains it alone and is
/// timed from connect to the last message — so the figure is the receiver's
/// speed, not the publisher's.
func receiveBenchmark(broker: MosquittoBroker, qos: QoS, options: CommonOptions) async throws -> Comparison {
    let n = options.messages
    let topic = "bench/recv/q\(qos.rawValue)"
    var ours: [Double] = []
    var theirs: [Double] = []
    for run in 0..<options.runs {
        let cId = "bench-c-\(qos.rawValue)-\(run)"
        let swiftId = "bench-swift-\(qos.rawValue)-\(run)"
        // Create both sessions.
        try runTool("mosquitto_sub", ["-h", broker.host, "-p", "\(broker.port)", "-V", "mqttv5", "-c", "-i", cId, "-x", "3600", "-q", "\(qos.rawValue)", "-t", topic, "-E"])
        var config = MQTTConfiguration(host: broker.host, port: broker.port, clientID: swiftId, cleanStart: false, sessionExpiry: 3600)
        config.receiveMaximum = 20 // libmosquitto's default, as mosquitto_sub uses
        config.inboundBufferCapacity = 100_000
        do {
            let c = try MQTTClient(configuration: config, eventLoopGroup: MQTTEventLoopGroup(numberOfThreads: 1))
            try await c.connect()
            try await c.subscribe(topic, qos: qos)
            await c.shutdown()
        }
        // Queue the stream for both.
        try await publishAll(broker: broker, topic: topic, count: n, size: options.size, qos: qos)

        // mosquitto_sub drains its queue.
        let clock = ContinuousClock()
        let t0 = clock.now
        try runTool("mosquitto_sub", ["-h", broker.host, "-p", "\(broker.port)", "-V", "mqttv5", "-c", "-i", cId, "-x", "3600", "-q", "\(qos.rawValue)", "-t", topic, "-C", "\(n)"])
        theirs.append(Double(n) / t0.duration(to: clock.now).seconds)

        // Our client drains its queue.
        let client = try MQTTClient(configuration: config, eventLoopGroup: MQTTEventLoopGroup(numberOfThreads: 1))
        let t1 = clock.now
        try await client.connect()
        var count = 0
        for await _ in client.messages {
            count += 1
            if count == n { break }
        }
        ours.append(Double(n) / t1.duration(to: clock.now).seconds)
        await client.shutdown()
    }
    return Comparison(name: "receive QoS \(qos.rawValue)", ours: median(ours), reference: median(theirs), referenceName: "mosquitto_sub")
}

func publishAll(broker: MosquittoBroker, topic: String, count: Int, size: Int, qos: QoS) async throws {
    let client = try MQTTClient(configuration: MQTTConfiguration(host: broker.host, port: broker.port, clientID: "bench-feeder-\(UUID().uuidString.prefix(6))"))
    try await client.connect()
    let body = payload(size: size)
    try await publishWindowed(client, topic: topic, count: count, payload: body, qos: qos, window: 100)
    await client.shutdown()
}

/// Publishes `count` messages keeping up to `window` QoS ≥ 1 publishes in flight.
func publishWindowed(_ client: MQTTClient, topic: String, count: Int, payload: [UInt8], qos: QoS, window: Int) async throws {
    if qos == .atMostOnce {
        for _ in 0..<count { try await client.publish(topic, payload: payload, qos: qos) }
        return
    }
    if window == .max {
        for _ in 0..<count { try client.publishNoWait(topic, payload: payload, qos: qos) }
        try await client.waitForAcknowledgements()
        return
    }
    // Up to `window` publishes outstanding; libmosquitto keeps sendMaximum of
    // them in flight on the wire and queues the rest, as it does for mosquitto_pub.
    try await withThrowingTaskGroup(of: Void.self) { group in
        var inFlight = 0
        for _ in 0..<count {
            if inFlight == window {
                try await group.next()
                inFlight -= 1
            }
            group.addTask { try await client.publish(topic, payload: payload, qos: qos) }
            inFlight += 1
        }
        try await group.waitForAll()
    }
}

// MARK: Publish

/// mosquitto_pub -l publishes one message per stdin line without waiting for
/// each acknowledgement (libmosquitto keeps 20 in flight and queues the rest);
/// our client publishes the same lines with `publishNoWait` and the same
/// in-flight window of 20 on the wire, then waits for every acknowledgement.
/// Each is timed until its last message was handed over (QoS 0) or
/// acknowledged (QoS 1).
///
/// Neither figure is taken on trust: a persistent session subscribed to the
/// topic (offline while the publisher runs, so the broker queues for it as
/// it does in every run) is drained after each publisher and must hold all
/// `n` messages, or the run fails. This check found that mosquitto_pub -l at
/// QoS 1 quits at the first acknowledgement whose message id equals its last
/// line's; ids wrap at 65,535, so with 100,000 lines it stopped after about
/// 34,470 and was credited with 100,000 (the 0.53× recorded at 0313b70).
func publishBenchmark(broker: MosquittoBroker, qos: QoS, options: CommonOptions) async throws -> Comparison {
    let n = options.messages
    if qos != .atMostOnce, n > 65_535 {
        throw ValidationError("--messages \(n): at QoS 1 mosquitto_pub -l publishes at most 65535 lines (it stops at the first acknowledgement whose message id equals its last line's, and ids wrap at 65535); expected at most 65535")
    }
    let line = String(decoding: payload(size: options.size), as: UTF8.self)
    let input = FileManager.default.temporaryDirectory.appendingPathComponent("mqtt-bench-lines-\(getpid()).txt")
    try String(repeating: line + "\n", count: n).write(to: input, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: input) }
    let topic = "bench/pub/q\(qos.rawValue)"
    var ours: [Double] = []
    var theirs: [Double] = []
    let clock = ContinuousClock()
    for run in 0..<options.runs {
        let counter = QueuedCounter(broker: broker, clientID: "bench-pub-count-\(qos.rawValue)-\(run)", topic: topic)
        try await counter.subscribe()

        let t0 = clock.now
        try runTool("mosquitto_pub", ["-h", broker.host, "-p", "\(broker.port)", "-V", "mqttv5", "-q", "\(qos.rawValue)", "-t", topic, "-l"], stdin: input)
        theirs.append(Double(n) / t0.duration(to: clock.now).seconds)
        try await counter.expect(n, from: "mosquitto_pub -l")

        var config = MQTTConfiguration(host: broker.host, port: broker.port, clientID: "bench-pub-\(UUID().uuidString.prefix(6))")
        config.sendMaximum = 20 // libmosquitto's default, as mosquitto_pub uses
        let body = payload(size: options.size)
        let t1 = clock.now
        let client = try MQTTClient(configuration: config, eventLoopGroup: MQTTEventLoopGroup(numberOfThreads: 1))
        try await client.connect()
        // Like mosquitto_pub -l: hand every line over without waiting, then wait for the acknowledgements.
        try await publishWindowed(client, topic: topic, count: n, payload: body, qos: qos, window: .max)
        await client.shutdown()
        ours.append(Double(n) / t1.duration(to: clock.now).seconds)
        try await counter.expect(n, from: "our client")
    }
    return Comparison(name: "publish QoS \(qos.rawValue)", ours: median(ours), reference: median(theirs), referenceName: "mosquitto_pub -l")
}

/// A persistent session on `topic` that counts what the broker queued for it
/// while it was away: proof that a publisher delivered every message.
struct QueuedCounter {
    let broker: MosquittoBroker
    let clientID: String
    let topic: String

    private var configuration: MQTTConfiguration {
        var config = MQTTConfiguration(host: broker.host, port: broker.port, clientID: clientID, cleanStart: false, sessionExpiry: 3600)
        config.inboundBufferCapacity = 100_000
        return config
    }

    /// Creates the session and its subscription (QoS 1: nothing is dropped), then leaves.
    func subscribe() async throws {
        let client = try MQTTClient(configuration: configuration, eventLoopGroup: MQTTEventLoopGroup(numberOfThreads: 1))
        try await client.connect()
        try await client.subscribe(topic, qos: .atLeastOnce)
        await client.shutdown()
    }

    /// Drains the session until it has `expected` messages or none came for
    /// two seconds; throws, naming the publisher, when it holds fewer.
    func expect(_ expected: Int, from publisher: String) async throws {
        let client = try MQTTClient(configuration: configuration, eventLoopGroup: MQTTEventLoopGroup(numberOfThreads: 1))
        try await client.connect()
        let counted = LockedBox(0) // shared by the draining task and the one watching it
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in client.messages where counted.mutex.withLock({ $0 += 1; return $0 }) >= expected { return }
            }
            group.addTask {
                var last = -1
                while !Task.isCancelled {
                    let now = counted.mutex.withLock { $0 }
                    if now == last || now >= expected { return }
                    last = now
                    try? await Task.sleep(for: .seconds(2))
                }
            }
            await group.next()
            group.cancelAll()
        }
        await client.shutdown()
        let got = counted.mutex.withLock { $0 }
        guard got >= expected else {
            throw ValidationError("\(publisher) delivered \(got) of \(expected) messages to '\(topic)' (counted by a subscriber session): its figure would count messages never published")
        }
    }
}

// MARK: Tools

@discardableResult
func runTool(_ name: String, _ arguments: [String], stdin: URL? = nil) throws -> Int32 {
    let process = Process()
    process.executableURL = try ExecutableLocator.find(name)
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    if let stdin { process.standardInput = try FileHandle(forReadingFrom: stdin) }
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw ValidationError("\(name) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus)")
    }
    return process.terminationStatus
}

extension Duration {
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
