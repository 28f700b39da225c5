import ArgumentParser
import FleetTestSupport
import Foundation
import Mosquitto
#if canImport(Glibc)
import Glibc
#endif

// MARK: pain

/// Issue 19, point 5: pain-to-release in wall-clock time, in the real
/// binary, under load. The release `massage-agent` runs with its simulator's
/// test control (`hardware.test_control`, docs/operations.md); the bench
/// starts a session as the person at the device would, presses the pain
/// button at a random moment, and reads from the agent when the engine's
/// release reached the simulated hardware (CLOCK_MONOTONIC, one clock for
/// every process). Meanwhile two processes burn CPU and one holds most of
/// the machine's memory (`fleet-bench pressure`).
struct PainBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pain",
        abstract: "Pain-to-release latency and tick jitter of the release massage-agent under CPU and memory load (goal: p99.9 ≤ 20 ms, max ≤ 40 ms).")
    @Option(help: "Presses to measure (at least 1000 for the goal's p99.9).") var presses = 1000
    @Option(help: "The massage-agent binary (default: the massagers' build, deploy/build-agent.sh).") var agent: String?
    @Option(help: "CPU-burning processes beside the agent (0 for none).") var burners = 2
    @Option(help: "Memory pressure: a child process holds memory until the machine has only this many MiB available (0 for none); it gives memory back when others need it.")
    var memoryFloorMib = 2048
    @Option(help: "The program each press interrupts.") var program = "calf-release"
    @Option(help: "Seed of the random press moments.") var seed: UInt64 = 1
    @Option(help: "lock_memory in the agent's config (default: the agent's default).") var lockMemory: Bool?
    @Option(help: "Give up after this many minutes.") var maxMinutes = 60
    @Option(help: "Run the agent under `chrt --fifo N` (every thread SCHED_FIFO at priority N; needs root): what a real-time control thread would buy. Default: as the unit runs it (SCHED_OTHER).")
    var realtimePriority: Int?

    static let tickMilliseconds = 20.0

    func run() async throws {
        guard presses > 0 else { throw ValidationError("--presses must be at least 1") }
        let binary = agent.map { URL(fileURLWithPath: $0) }
            ?? repository.appendingPathComponent(".build-agent/release/massage-agent")
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw ValidationError("\(binary.path) is not an executable; build it with deploy/build-agent.sh or pass --agent")
        }
        let broker = try await MosquittoBroker.start(BrokerOptions(extraConfig: "set_tcp_nodelay true\n"))
        defer { broker.stopNow() }
        let data = try TemporaryDirectory(prefix: "pain-bench")
        let socket = data.url.appendingPathComponent("control.sock")
        let config = data.url.appendingPathComponent("agent.yaml")
        try """
            site: bench
            device: pain-1
            data_dir: \(data.url.appendingPathComponent("data").path)
            programs_dir: \(repository.appendingPathComponent("Config/programs").path)
            broker: {host: 127.0.0.1, port: \(broker.port), allow_plaintext: true}   # the bench broker: plain MQTT on loopback
            telemetry_interval_s: 1
            usage_interval_s: 60
            log_level: warning
            hardware: {kind: simulated, seed: 1, test_control: \(socket.path)}
            \(lockMemory.map { "lock_memory: \($0)" } ?? "")
            """.write(to: config, atomically: true, encoding: .utf8)

        // Every child is SIGKILLed when its runner goes (and by its orphan
        // guard if this process dies first).
        var children: [ProcessRunner] = []
        defer { for child in children { child.kill() } }
        let agentProcess = try realtimePriority.map { priority in
            // chrt execs the agent: the same process, pid and threads.
            try ProcessRunner.start(tool: "chrt", arguments: ["--fifo", "\(priority)", binary.path, "--config", config.path])
        } ?? ProcessRunner.start(binary, arguments: ["--config", config.path])
        children.append(agentProcess)

        let probe = try MQTTClient(configuration: MQTTConfiguration(host: broker.host, port: broker.port, clientID: "pain-probe"))
        try await probe.connect()
        let inbox = MessageCollector(probe)
        let events = "massage/v1/bench/pain-1/events"
        try await probe.subscribe(events, qos: .atLeastOnce)

        var control: TestControlClient?
        try await waitUntil(timeout: .seconds(30), "the agent's test control socket accepts") {
            guard agentProcess.isRunning else {
                throw ValidationError("the agent exited: \(agentProcess.standardError())")
            }
            control = try? TestControlClient(path: socket.path)
            return control != nil
        }
        let hand = control!

        // The load, before the first press: the memory first (it fills faster alone), then the burners.
        if memoryFloorMib > 0 {
            let pressure = try ProcessRunner.start(productsDirectory.appendingPathComponent("fleet-bench"),
                                                   arguments: ["pressure", "--floor-mib", "\(memoryFloorMib)", "--seconds", "\(maxMinutes * 60 + 60)"])
            children.append(pressure)
            try await pressure.waitForOutput("pressure ready", timeout: .seconds(600))
        }
        for _ in 0..<burners {
            children.append(try ProcessRunner.start(tool: "sh", arguments: ["-c", "while :; do :; done"]))
        }
        let loadText = "\(burners) CPU burner(s), " + (memoryFloorMib > 0 ? "memory held down to \(memoryFloorMib) MiB available" : "no memory pressure")
            + (lockMemory == false ? ", lock_memory: false" : "") + (realtimePriority.map { ", agent under chrt --fifo \($0)" } ?? "")

        var rng = BenchRandom(seed: seed)
        var latencies: [Double] = []    // press → release reached the hardware (ms)
        var tickWaits: [Double] = []    // press → the tick that read it (ms)
        var tickWork: [Double] = []     // that read → the release (ms): the abort path itself
        var missed = 0
        let clock = ContinuousClock()
        let giveUp = clock.now + .seconds(maxMinutes * 60)
        _ = try hand.call("unpress")
        _ = try hand.call("reset-ticks")
        let cpu0 = ProcessStatistics.cpuSeconds(agentProcess.processIdentifier)
        let started = clock.now
        for index in 0..<presses {
            guard clock.now < giveUp else { throw ValidationError("gave up after \(maxMinutes) min at press \(index)") }
            // A new session as the person at the device starts it: remote
            // starts are locked out for a while after a pain abort.
            var reply: [String] = []
            try await waitUntil(timeout: .seconds(5), pollEvery: .milliseconds(5), "press \(index): a local start of \(program) is accepted") {
                reply = try hand.call("start \(program)", allowError: true)
                if reply.first == "ok" { return true }
                if reply.dropFirst().first == "unsafe" || reply.dropFirst().first == "busy" { return false } // the button's release not yet read
                throw ValidationError("start \(program) refused: \(reply.joined(separator: " "))")
            }
            // The session ramps: pressure in the cells, then a random moment.
            try await waitUntil(timeout: .seconds(5), pollEvery: .milliseconds(2), "press \(index): the session puts pressure on the leg") {
                (Double(try hand.call("pressure")[1]) ?? 0) >= 2
            }
            try await Task.sleep(for: .milliseconds(30 + Int(rng.next() % 271)))
            _ = try hand.call("press")
            let timing = try hand.call("release 2000").dropFirst().compactMap { Int64($0) }
            guard timing.count == 3, timing[2] != 0 else {
                missed += 1
                latencies.append(2000)
                _ = try hand.call("unpress")
                continue
            }
            latencies.append(Double(timing[2] - timing[0]) / 1e6)
            tickWaits.append(Double(timing[1] - timing[0]) / 1e6)
            tickWork.append(Double(timing[2] - timing[1]) / 1e6)
            _ = try hand.call("unpress")
            try await waitUntil(timeout: .seconds(5), pollEvery: .milliseconds(2), "press \(index): the session ended") {
                try hand.call("session")[1] == "idle"
            }
        }
        let took = started.duration(to: clock.now).seconds
        let agentCPU = (ProcessStatistics.cpuSeconds(agentProcess.processIdentifier) - cpu0) / took * 100
        let ticks = try hand.call("ticks").dropFirst().reduce(into: [String: Double]()) { out, pair in
            let parts = pair.split(separator: "=")
            if parts.count == 2 { out[String(parts[0])] = Double(parts[1]) }
        }
        // Every press ended its session `aborted: pain_signal` on the wire.
        try? await waitUntil(timeout: .seconds(10), "the pain aborts on the events topic") {
            inbox.messages(on: events).filter { String(decoding: $0.payload, as: UTF8.self).contains("\"pain_signal\"") }.count >= presses
        }
        let painAborts = inbox.messages(on: events).filter { String(decoding: $0.payload, as: UTF8.self).contains("\"pain_signal\"") }.count
        await probe.shutdown()

        let p999 = percentile(latencies, 0.999), worst = latencies.max() ?? 0
        let pass = missed == 0 && p999 <= Self.tickMilliseconds && worst <= 2 * Self.tickMilliseconds
        let ms = { (value: Double) in String(format: "%.2f", value) }
        let us = { (key: String) in ticks[key].map { String(format: "%.2f", $0 / 1000) } ?? "?" }
        print("| pain-to-release, \(binary.lastPathComponent) (\(loadText)) | value | goal |")
        print("| --- | ---: | --- |")
        print("| presses (during \(program) sessions, 30–300 ms after the cells took pressure) | \(latencies.count), \(missed) without a release in 2 s | ≥ 1000 |")
        print("| session_aborted pain_signal events on the wire | \(painAborts) | \(presses) |")
        print("| first press (its abort path not yet run since start-up): press → release, of which read → release | \(ms(latencies.first ?? 0)) ms, \(String(format: "%.3f", tickWork.first ?? 0)) ms | |")
        print("| p50 / p99 | \(ms(percentile(latencies, 0.5))) / \(ms(percentile(latencies, 0.99))) ms | |")
        print("| p99.9 | \(ms(p999)) ms | ≤ 20 ms (one tick) |")
        print("| max | \(ms(worst)) ms | ≤ 40 ms (two ticks) |")
        if !tickWaits.isEmpty {
            print("| of which waiting for the next tick's read: p50 / p99.9 / max | \(ms(percentile(tickWaits, 0.5))) / \(ms(percentile(tickWaits, 0.999))) / \(ms(tickWaits.max() ?? 0)) ms | |")
            let work = { (value: Double) in String(format: "%.3f", value) }
            print("| of which that read → the release (the tick's abort path): p50 / p99 / p99.9 / max | \(work(percentile(tickWork, 0.5))) / \(work(percentile(tickWork, 0.99))) / \(work(percentile(tickWork, 0.999))) / \(work(tickWork.max() ?? 0)) ms | |")
        }
        print("| tick interval p50 / p99 / p99.9 / max (\(Int(ticks["count"] ?? 0)) ticks, 10 µs bins) | \(us("p50_us")) / \(us("p99_us")) / \(us("p999_us")) / \(us("max_us")) ms | 20 ms |")
        print("| agent CPU during the run | \(String(format: "%.1f", agentCPU)) % of a core | |")
        print("| goal | **\(pass ? "met" : "missed")** | |")
        if !pass { throw ExitCode(1) }
    }
}

/// SplitMix64: the press moments replay exactly for a seed.
struct BenchRandom {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

// MARK: pressure

/// The memory pressure of `pain`: holds anonymous memory (touched, so it is
/// really used; there is no swap to put it in) until the machine has only
/// `--floor-mib` available, so the kernel reclaims file pages (other
/// programs' code and the page cache) to make room, and gives chunks back
/// when something else needs memory below the floor. It offers itself to
/// the OOM killer first (oom_score_adj 1000). Exits after `--seconds`.
struct MemoryPressure: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pressure", abstract: "Hold memory down to a floor of available memory (pain's load).", shouldDisplay: false)
    @Option(help: "MiB of memory to leave available.") var floorMib = 2048
    @Option(help: "MiB per allocation.") var chunkMib = 64
    @Option(help: "Exit after this many seconds.") var seconds = 3600

    func run() throws {
        _ = try? "1000".write(toFile: "/proc/self/oom_score_adj", atomically: false, encoding: .utf8)
        let chunk = chunkMib << 20
        var held: [UnsafeMutableRawPointer] = []
        var ready = false
        let end = Date().addingTimeInterval(TimeInterval(seconds))
        while Date() < end {
            guard let available = Self.availableMiB() else { throw ValidationError("cannot read MemAvailable from /proc/meminfo") }
            if available > floorMib + chunkMib {
                // MAP_POPULATE: the kernel allocates every page now (a page fault each would take minutes on a busy machine).
                guard let memory = mmap(nil, chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0),
                      memory != MAP_FAILED
                else { usleep(20_000); continue }
                held.append(memory)
                continue  // fill quickly, then settle
            }
            if available < floorMib {
                for _ in 0...((floorMib - available) / chunkMib) {
                    guard let memory = held.popLast() else { break }
                    munmap(memory, chunk)
                }
            }
            if !ready {
                ready = true
                print("pressure ready: holding \(held.count * chunkMib) MiB, \(available) MiB available")
                fflush(nil)  // every stream: the bench waits for this line
            }
            usleep(20_000)
        }
    }

    static func availableMiB() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") })
        else { return nil }
        return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }.map { $0 >> 10 }
    }
}
