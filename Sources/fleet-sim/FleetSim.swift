import ArgumentParser
import FleetProtocol
import Foundation
import Logging
import MassageAgent
import MassageEngine
import Mosquitto
import ServiceLifecycle
import Synchronization

/// Many simulated massagers in one process: each a real agent (its own MQTT
/// connection, engine, outbox and data directory) on a shared event loop, with
/// a session load and fault injection. Used by deploy/demo.sh.
@main
struct FleetSim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet-sim",
        abstract: "Run N simulated massagers over S sites against a broker, with sessions and faults.")

    @Option(help: "Number of massagers.") var devices = 12
    @Option(help: "Number of the first massager (sim-N): several processes can each run a part of one fleet.") var first = 1
    @Option(help: "Number of sites (site-1 … site-S, or --site-names).") var sites = 2
    @Option(name: .customLong("site-names"), help: "Comma-separated site ids to use instead of site-1…") var siteNames: String?
    @Option(help: "Broker as HOST:PORT.") var broker = "127.0.0.1:1883"
    @Option(help: "Simulated time N× faster.") var speed: Double = 60
    @Option(name: .customLong("data-dir"), help: "Where each massager keeps its database (default: a temporary directory).") var dataDir: String?
    @Option(name: .customLong("programs-dir"), help: "Built-in programs (YAML).") var programsDir = "Config/programs"
    @Option(name: .customLong("sessions-per-hour"), help: "Sessions each massager starts locally per simulated hour.") var sessionsPerHour: Double = 2
    @Option(name: .customLong("pain-rate"), help: "Share of sessions the person ends with the pain button (0–1).") var painRate: Double = 0.05
    @Option(name: .customLong("overheat-rate"), help: "Share of sessions whose motor overheats (0–1).") var overheatRate: Double = 0.01
    @Option(name: .customLong("telemetry-interval"), help: "Seconds between telemetry messages of each massager (default: the agent's own default).") var telemetryInterval: Double?
    @Option(help: "Seconds to run (0: until SIGTERM/SIGINT).") var duration: Double = 0
    @Option(help: "Event-loop threads for the MQTT connections.") var threads = 2
    @Option(name: .customLong("control-threads"), help: "Threads that tick every engine of the process (shared, normal scheduler).") var controlThreads = 2
    @Option(help: "Random seed (devices and load are deterministic per seed).") var seed: UInt64 = 1
    @Option(name: .customLong("summary-every"), help: "Seconds between summary lines.") var summaryEvery: Double = 5
    @Flag(help: "Thin devices: the wire contract only (status, telemetry, events, usage, replies to commands and desired configs), no engine, control thread or database each; for 10,000 devices. Sessions and faults are not simulated.")
    var thin = false

    func validate() throws {
        guard devices >= 1, sites >= 1, first >= 1 else { throw ValidationError("--devices, --sites and --first must be at least 1") }
        guard (0...1).contains(painRate), (0...1).contains(overheatRate) else { throw ValidationError("--pain-rate and --overheat-rate are shares from 0 to 1") }
        guard (1...64).contains(controlThreads) else { throw ValidationError("--control-threads must be 1–64") }
        guard speed > 0, speed <= 1000 else { throw ValidationError("--speed must be in (0, 1000]") }
        if let t = telemetryInterval, !DeviceConfig.telemetryIntervalRange.contains(t) {
            throw ValidationError("--telemetry-interval must be \(DeviceConfig.telemetryIntervalRange.lowerBound)–\(DeviceConfig.telemetryIntervalRange.upperBound) seconds")
        }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = .warning
            return h
        }
        let logger = Logger(label: "fleet-sim")
        let base = URL(fileURLWithPath: dataDir ?? FileManager.default.temporaryDirectory.appendingPathComponent("fleet-sim-\(getpid())").path)
        let siteIDs = siteNames.map { $0.split(separator: ",").map(String.init) } ?? (1...sites).map { "site-\($0)" }
        let group = MQTTEventLoopGroup(numberOfThreads: threads)
        if thin {
            try await runThin(sites: siteIDs, base: base, group: group, logger: logger)
            return
        }
        // Every engine of the process is ticked by a few shared control
        // threads on the normal scheduler, not a thread each at a real-time
        // priority as on a massager: a thousand SCHED_FIFO threads would take
        // the machine from the broker and console they exist to load, and a
        // thousand threads waking 50 times a second cost more than the
        // ticks (issue 23). Each engine keeps the loop's per-engine checks
        // (ControlLoopGroup.swift).
        let controlGroup = ControlLoopGroup(threads: controlThreads)
        var agents: [(AgentService, SimulatedMassager)] = []
        for i in first - 1..<first - 1 + devices {
            let site = siteIDs[i % siteIDs.count]
            let device = String(format: "sim-%04d", i + 1)
            var overrides = AgentOverrides(site: site, device: device, broker: broker, dataDirectory: base.appendingPathComponent(device).path, speed: speed)
            overrides.logLevel = "warning"
            var config = try AgentConfiguration.load(file: nil, overrides: overrides)
            // fleet-sim speaks plain MQTT only (a broker for demos and load
            // tests): the opt-in every agent needs for that, said here and
            // warned about below (issue 20, item 12).
            config.broker.allowPlaintext = true
            config.programsDirectory = URL(fileURLWithPath: programsDir)
            config.hardwareSeed = seed &+ UInt64(i)
            if let telemetryInterval { config.telemetryIntervalSeconds = telemetryInterval }
            let hardware = SimulatedMassager(seed: config.hardwareSeed)
            let agent = try AgentService(configuration: config, dependencies: .init(hardware: hardware, eventLoopGroup: group, controlGroup: controlGroup), logger: logger)
            agents.append((agent, hardware))
        }
        logger.warning("fleet-sim connects WITHOUT TLS to \(broker): simulated massagers are for a development or test broker only")
        print("fleet-sim: \(devices) massagers over \(siteIDs.count) sites (\(siteIDs.joined(separator: ", "))), broker \(broker), speed \(speed)×, data in \(base.path)")
        let load = SimulatedLoad(agents: agents, speed: speed, sessionsPerHour: sessionsPerHour, painRate: painRate,
                                 overheatRate: overheatRate, seed: seed, summaryEvery: summaryEvery, duration: duration)
        let services: [any Service] = agents.map(\.0) + [load]
        let serviceGroup = ServiceGroup(configuration: .init(
            services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0, successTerminationBehavior: $0 is SimulatedLoad ? .gracefullyShutdownGroup : .ignore) },
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await serviceGroup.run()
        await load.printTotals()
    }
}

extension FleetSim {
    /// `--thin`: one `ThinDevice` per massager, a summary line every
    /// `summaryEvery` seconds, until `duration` or SIGTERM/SIGINT.
    func runThin(sites: [String], base: URL, group: MQTTEventLoopGroup, logger: Logger) async throws {
        try Self.ensureDescriptors(for: devices)
        let programs = try ProgramLibrary.load(directory: URL(fileURLWithPath: programsDir)).ids
        var devices: [ThinDevice] = []
        for i in first - 1..<first - 1 + self.devices {
            let device = String(format: "sim-%04d", i + 1)
            // The configuration asks for a data directory; a thin device creates and writes none.
            var overrides = AgentOverrides(site: sites[i % sites.count], device: device, broker: broker, dataDirectory: base.appendingPathComponent(device).path)
            overrides.logLevel = "warning"
            var config = try AgentConfiguration.load(file: nil, overrides: overrides)
            config.broker.allowPlaintext = true  // as the full agents above: a development or test broker only
            if let telemetryInterval { config.telemetryIntervalSeconds = telemetryInterval }
            devices.append(try ThinDevice(configuration: config, programs: programs, eventLoopGroup: group, logger: logger))
        }
        logger.warning("fleet-sim connects WITHOUT TLS to \(broker): simulated massagers are for a development or test broker only")
        print("fleet-sim: \(devices.count) thin devices over \(sites.count) sites (\(sites.joined(separator: ", "))), broker \(broker)")
        let summary = ThinSummary(devices: devices, summaryEvery: summaryEvery, duration: duration)
        let services: [any Service] = devices + [summary]
        let serviceGroup = ServiceGroup(configuration: .init(
            services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0, successTerminationBehavior: $0 is ThinSummary ? .gracefullyShutdownGroup : .ignore) },
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await serviceGroup.run()
        print("fleet-sim totals: \(devices.count) thin devices")
    }
}

extension FleetSim {
    /// Each thin device holds three descriptors (its socket and
    /// libmosquitto's socket pair); run out, and libdispatch traps instead of
    /// anything reporting it. Raises the soft open-file limit to the hard one
    /// and refuses to start when even that is too low.
    static func ensureDescriptors(for devices: Int) throws {
        let needed = rlim_t(devices * 3 + 1024)  // + what the process needs besides
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        if limit.rlim_cur < needed, limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = min(needed, limit.rlim_max)
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        guard limit.rlim_cur >= needed else {
            throw ValidationError("\(devices) thin devices need about \(needed) open files (3 each); the limit is \(limit.rlim_cur) (hard \(limit.rlim_max)): raise it (ulimit -n, LimitNOFILE) or run several fleet-sim processes")
        }
    }
}

/// Prints how many thin devices are connected; ends after `duration` (if set).
final class ThinSummary: Service, Sendable {
    let devices: [ThinDevice]
    let summaryEvery, duration: Double

    init(devices: [ThinDevice], summaryEvery: Double, duration: Double) {
        self.devices = devices
        self.summaryEvery = summaryEvery
        self.duration = duration
    }

    func run() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        await withGracefulShutdownHandler {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                let elapsed = start.duration(to: clock.now)
                if duration > 0, elapsed >= .seconds(duration) { break }
                print("[\(elapsed.components.seconds) s] connected \(devices.filter(\.isConnected).count)/\(devices.count)")
                try? await Task.sleep(for: .seconds(summaryEvery))
            }
        } onGracefulShutdown: {}
    }
}

/// Starts sessions on the simulated devices and injects faults; prints a live
/// summary. Ends after `duration` (if set), which shuts the whole group down.
final class SimulatedLoad: Service, Sendable {
    let agents: [(AgentService, SimulatedMassager)]
    let speed, sessionsPerHour, painRate, overheatRate, summaryEvery, duration: Double
    let rng: Mutex<SplitMix64>
    let started = Atomic<Int>(0)
    let refused = Atomic<Int>(0)
    let painPresses = Atomic<Int>(0)
    let overheats = Atomic<Int>(0)

    init(agents: [(AgentService, SimulatedMassager)], speed: Double, sessionsPerHour: Double, painRate: Double, overheatRate: Double,
         seed: UInt64, summaryEvery: Double, duration: Double) {
        self.agents = agents
        self.speed = speed
        self.sessionsPerHour = sessionsPerHour
        self.painRate = painRate
        self.overheatRate = overheatRate
        self.summaryEvery = summaryEvery
        self.duration = duration
        rng = Mutex(SplitMix64(seed: seed))
    }

    func run() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        var nextSummary = start + .seconds(summaryEvery)
        // Each real second is `speed` simulated seconds.
        let perDevicePerSecond = sessionsPerHour * speed / 3600
        await withGracefulShutdownHandler {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                if duration > 0, start.duration(to: clock.now) >= .seconds(duration) { break }
                for (agent, hardware) in agents {
                    // Faults end after a while; release the pain button and cool down.
                    hardware.clear(.painButton)
                    guard !agent.isInSession else {
                        if roll() < painRate * 0.05 { hardware.inject(.painButton); painPresses.add(1, ordering: .relaxed) }
                        continue
                    }
                    hardware.clear(.overheating(celsiusPerSecond: 5))
                    var generator = Generator(self)
                    if roll() < perDevicePerSecond, let program = agent.programIDs.randomElement(using: &generator) {
                        do {
                            _ = try agent.startLocally(program: program)
                            started.add(1, ordering: .relaxed)
                            if roll() < overheatRate { hardware.inject(.overheating(celsiusPerSecond: 5)); overheats.add(1, ordering: .relaxed) }
                        } catch {
                            refused.add(1, ordering: .relaxed)
                        }
                    }
                }
                if clock.now >= nextSummary {
                    await printSummary(elapsed: start.duration(to: clock.now))
                    nextSummary = clock.now + .seconds(summaryEvery)
                }
                try? await Task.sleep(for: .seconds(1))
            }
        } onGracefulShutdown: {}
    }

    func roll() -> Double { rng.withLock { Double($0.next() >> 11) / Double(1 << 53) } }

    /// The outbox backlog, summed over the agents (each an awaited read).
    func outboxBacklog() async -> Int {
        var backlog = 0
        for (agent, _) in agents { backlog += await agent.outboxBacklog }
        return backlog
    }

    func printSummary(elapsed: Duration) async {
        let connected = agents.filter { $0.0.isConnected }.count
        let inSession = agents.filter { $0.0.isInSession }.count
        let usage = agents.map { $0.0.usageCounters }
        let completed = usage.reduce(0) { $0 + $1.sessionsCompleted }
        let aborted = usage.reduce(0) { $0 + $1.sessionsAbortedTotal }
        let events = agents.reduce(0) { $0 + $1.0.eventsNumbered }
        let backlog = await outboxBacklog()
        print("[\(Int(elapsed.components.seconds)) s] connected \(connected)/\(agents.count), in session \(inSession), started \(started.load(ordering: .relaxed)), completed \(completed), aborted \(aborted), refused \(refused.load(ordering: .relaxed)), events \(events), outbox \(backlog)")
    }

    func printTotals() async {
        let usage = agents.map { $0.0.usageCounters }
        let backlog = await outboxBacklog()
        var aborted: [String: Int] = [:]
        for u in usage { for (k, v) in u.sessionsAborted where v > 0 { aborted[k, default: 0] += v } }
        print("fleet-sim totals: started \(usage.reduce(0) { $0 + $1.sessionsStarted }), completed \(usage.reduce(0) { $0 + $1.sessionsCompleted }), aborted \(aborted.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")), pain presses \(painPresses.load(ordering: .relaxed)), overheats \(overheats.load(ordering: .relaxed)), events \(agents.reduce(0) { $0 + $1.0.eventsNumbered }), outbox \(backlog)")
    }
}

/// The load's seeded generator as a RandomNumberGenerator.
struct Generator: RandomNumberGenerator {
    let load: SimulatedLoad
    init(_ load: SimulatedLoad) { self.load = load }
    mutating func next() -> UInt64 { load.rng.withLock { $0.next() } }
}
