// swift-tools-version:6.0
import PackageDescription

// ThreadSanitizer builds (deploy/test.sh sets MASSAGEFLEET_TSAN=1): our
// modules that use Synchronization.Mutex swap it for a pthread-backed one
// TSan can see (Mutex+ThreadSanitizer.swift in each). Normal builds: nothing.
let tsanShadow: [SwiftSetting] = Context.environment["MASSAGEFLEET_TSAN"] == "1" ? [.define("MASSAGEFLEET_TSAN")] : []

// The edges point one way: each layer depends only on layers above it.
//
//   CMosquitto, CModbus           C shims over libmosquitto and libmodbus
//   Mosquitto, MassageEngine      the MQTT client; the pure engine (on nothing of ours)
//   FleetTestKit                  the test kit: waits, temp dirs, wire JSON, tags (on nothing of ours)
//   MassageEngineTesting,         the engine's test doubles; the Modbus hardware
//   MassagerLink, FleetTestSupport  link; test fixtures (on Mosquitto and the kit)
//   FleetProtocol                 the wire contract, on the engine alone
//   FleetSettings                 config files and broker settings (+ Mosquitto)
//   MassageAgent, FleetConsole    the agent and console libraries
//   FleetConsoleClient            the console API's client (FleetConsole's records)
//   executables                   on libraries only, never on another executable
//
// No cycles: the engine never sees MQTT, the protocol never sees the client.
let package = Package(
    name: "MassageFleet",
    platforms: [.macOS(.v15)],
    // What another package may depend on, each with who it is for. The fuzz
    // targets (Tests/Fuzz, built with -sanitize=fuzzer) and the
    // ThreadSanitizer pass (Tests/TSan) are packages of their own and reach
    // our code only through these; nothing else is exported (the C shims,
    // MassagerLink and the executables stay inside).
    products: [
        // The device engine, for software that drives a massager. Fuzz:
        // fuzz-desired-config, fuzz-rollout (the engine's limits); TSan.
        .library(name: "MassageEngine", targets: ["MassageEngine"]),
        // The engine's test doubles (manual clock, in-memory storage), for
        // tests of code that runs an engine. TSan: the agent's tests.
        .library(name: "MassageEngineTesting", targets: ["MassageEngineTesting"]),
        // The wire contract, for anything that talks to agents or the
        // console over MQTT. Fuzz: fuzz-command, fuzz-desired-config; TSan.
        .library(name: "FleetProtocol", targets: ["FleetProtocol"]),
        // The MQTT 5 client over libmosquitto. Fuzz: fuzz-ingest (its
        // message type); TSan: the client's own suites.
        .library(name: "Mosquitto", targets: ["Mosquitto"]),
        // The configuration files' reader and broker settings. TSan: the
        // agent's configuration tests.
        .library(name: "FleetSettings", targets: ["FleetSettings"]),
        // The agent, to embed one. Fuzz: fuzz-agent-config,
        // fuzz-desired-config; TSan: the agent's unit suites.
        .library(name: "MassageAgent", targets: ["MassageAgent"]),
        // The console, to embed one. Fuzz: fuzz-ingest, fuzz-rollout.
        .library(name: "FleetConsole", targets: ["FleetConsole"]),
        // A client of a running console's HTTP API, for scripts and tools
        // (fleet-console's client subcommands are one).
        .library(name: "FleetConsoleClient", targets: ["FleetConsoleClient"]),
        // The test fixtures (broker, console and agent processes) and the
        // kit they re-export, for the ThreadSanitizer package in Tests/TSan only.
        .library(name: "FleetTestSupport", targets: ["FleetTestSupport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // libmosquitto (pkg-config) as a system library: the C shim under Mosquitto.
        .systemLibrary(
            name: "CMosquitto",
            pkgConfig: "libmosquitto",
            providers: [.apt(["libmosquitto-dev"])]
        ),
        // libmodbus: the link to a real massager's controller board.
        .systemLibrary(
            name: "CModbus",
            pkgConfig: "libmodbus",
            providers: [.apt(["libmodbus-dev"])]
        ),
        // The Swift MQTT 5 client over libmosquitto; the only place that
        // sees MOSQ_ERR_* and C pointers.
        .target(
            name: "Mosquitto",
            dependencies: [
                "CMosquitto",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: tsanShadow
        ),
        // The device engine, pure domain: programs, safety, sessions,
        // schedules, usage ledger, the hardware protocol and its simulator.
        // No MQTT, no database, no test doubles.
        .target(
            name: "MassageEngine",
            dependencies: [.product(name: "Yams", package: "Yams")],
            swiftSettings: tsanShadow
        ),
        // The engine's test doubles (the habit of HummingbirdTesting): a
        // manual clock and in-memory and JSON-file storages, for tests and
        // engine-bench; no program ships them.
        .target(
            name: "MassageEngineTesting",
            dependencies: ["MassageEngine"]
        ),
        // The wire contract shared by agent and console: topics, messages,
        // command and error codes, config documents. Depends on the engine
        // alone (never on the MQTT client).
        .target(
            name: "FleetProtocol",
            dependencies: ["MassageEngine"]
        ),
        // The YAML configuration files' reader (dotted keys, every problem
        // collected) and the `broker:` section both files share, which
        // becomes a Mosquitto client configuration.
        .target(
            name: "FleetSettings",
            dependencies: ["FleetProtocol", "Mosquitto"]
        ),
        // The agent library: engine <-> MQTT, outbox, commands, config, and
        // EngineDriver, the control thread that runs the engine in real time.
        .target(
            name: "MassageAgent",
            dependencies: [
                "Mosquitto", "MassageEngine", "FleetProtocol", "FleetSettings",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: tsanShadow
        ),
        // The hardware link: MassagerHardware over Modbus RTU/TCP and the
        // reference controller that serves the same register map; the only
        // place that sees libmodbus.
        .target(
            name: "MassagerLink",
            dependencies: ["CModbus", "MassageEngine"]
        ),
        // The reference controller board: serves MassagerLink's register map.
        .executableTarget(
            name: "massager-controller",
            dependencies: [
                "MassagerLink", "MassageEngine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The agent a massager runs: arguments, config, service group.
        .executableTarget(
            name: "massage-agent",
            dependencies: [
                "MassageAgent", "FleetProtocol", "FleetSettings", "MassagerLink",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // The console library: ingest, fleet store (SQLite or PostgreSQL),
        // health, commands, HTTP API.
        .target(
            name: "FleetConsole",
            dependencies: [
                "Mosquitto", "MassageEngine", "FleetProtocol", "FleetSettings",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Mustache", package: "swift-mustache"),
            ]
        ),
        // A client of a running console's HTTP API and the text tables the
        // CLI prints; what fleet-console's client subcommands call.
        .target(
            name: "FleetConsoleClient",
            dependencies: ["FleetConsole", "FleetProtocol"]
        ),
        // The console: `serve` and `migrate-db` over FleetConsole, the client
        // subcommands over FleetConsoleClient; argument parsing and calls.
        .executableTarget(
            name: "fleet-console",
            dependencies: [
                "FleetConsole", "FleetConsoleClient", "FleetProtocol", "FleetSettings",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // The small test kit, without MQTT or processes: waits with
        // deadlines, temporary directories, a seeded generator, wire JSON,
        // fixture and timeout errors, and the tiers' tags (.e2e, .postgres,
        // .browser, .chaos, .slow). Suites that need no fixture use it alone.
        .target(
            name: "FleetTestKit",
            swiftSettings: tsanShadow
        ),
        // Fixtures shared by the test targets and the benches (real
        // mosquitto and PostgreSQL, child processes, the agent and console
        // process harnesses, FleetProbe); re-exports FleetTestKit.
        .target(
            name: "FleetTestSupport",
            dependencies: ["FleetTestKit", "Mosquitto"],
            swiftSettings: tsanShadow
        ),
        // Benchmarks (docs/BENCHMARKS.md): the MQTT client against raw
        // libmosquitto; a simulated fleet; the engine's ticks per CPU second;
        // the fleet against a real console and agents.
        .executableTarget(
            name: "mqtt-bench",
            dependencies: [
                "Mosquitto",
                "CMosquitto",
                "FleetTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Many simulated massagers in one process (demo, load, chaos).
        .executableTarget(
            name: "fleet-sim",
            dependencies: [
                "MassageAgent", "MassageEngine", "FleetProtocol", "Mosquitto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(name: "engine-bench", dependencies: ["MassageEngine", "MassageEngineTesting", "FleetTestKit"]),
        .executableTarget(
            name: "fleet-bench",
            dependencies: [
                "Mosquitto", "FleetProtocol", "FleetTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // One test target per library; DeploymentTests checks deploy/ (the
        // shipped broker config, provisioning, systemd units).
        .testTarget(name: "FleetTestSupportTests", dependencies: ["FleetTestSupport"]),
        .testTarget(name: "MosquittoTests", dependencies: ["Mosquitto", "FleetTestSupport"]),
        .testTarget(name: "DeploymentTests", dependencies: ["Mosquitto", "FleetProtocol", "FleetTestSupport"]),
        .testTarget(name: "MassageEngineTests", dependencies: ["MassageEngine", "MassageEngineTesting"]),
        .testTarget(name: "FleetProtocolTests", dependencies: ["FleetProtocol", "FleetTestKit"]),
        .testTarget(name: "MassagerLinkTests", dependencies: ["MassagerLink", "MassageEngine", "MassageEngineTesting", "MassageAgent", "FleetTestSupport"]),
        .testTarget(name: "MassageAgentTests", dependencies: ["MassageAgent", "FleetSettings", "MassageEngineTesting", "FleetTestSupport", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "FleetConsoleClientTests", dependencies: ["FleetConsoleClient", "FleetConsole", "FleetProtocol"]),
        .testTarget(
            name: "FleetConsoleTests",
            dependencies: [
                "FleetConsole", "FleetSettings", "MassageAgent", "FleetTestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
    ]
)
