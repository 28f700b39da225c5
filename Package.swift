// swift-tools-version:6.0
import PackageDescription

// ThreadSanitizer builds (deploy/test.sh sets MASSAGEFLEET_TSAN=1): our
// modules that use Synchronization.Mutex swap it for a pthread-backed one
// TSan can see (Mutex+ThreadSanitizer.swift in each). Normal builds: nothing.
let tsanShadow: [SwiftSetting] = Context.environment["MASSAGEFLEET_TSAN"] == "1" ? [.define("MASSAGEFLEET_TSAN")] : []

let package = Package(
    name: "MassageFleet",
    platforms: [.macOS(.v15)],
    // Libraries other packages may depend on: the fuzz targets in
    // Tests/Fuzz (a separate package, built with -sanitize=fuzzer) use them.
    products: [
        .library(name: "MassageEngine", targets: ["MassageEngine"]),
        .library(name: "MassageEngineTesting", targets: ["MassageEngineTesting"]),
        .library(name: "FleetProtocol", targets: ["FleetProtocol"]),
        .library(name: "FleetSettings", targets: ["FleetSettings"]),
        .library(name: "MassageAgent", targets: ["MassageAgent"]),
        .library(name: "FleetConsole", targets: ["FleetConsole"]),
        .library(name: "Mosquitto", targets: ["Mosquitto"]),
        // The test fixtures (broker, console and agent processes), for the
        // ThreadSanitizer package in Tests/TSan.
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
        // C shim → Swift wrapper
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
            dependencies: [.product(name: "Yams", package: "Yams")]
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
        .executableTarget(
            name: "massager-controller",
            dependencies: [
                "MassagerLink", "MassageEngine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "massage-agent",
            dependencies: [
                "MassageAgent", "FleetProtocol", "FleetSettings", "MassagerLink",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
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
        .executableTarget(
            name: "fleet-console",
            dependencies: [
                "FleetConsole", "FleetConsoleClient", "FleetProtocol", "FleetSettings",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // Fixtures shared by every test target (real mosquitto, temp dirs).
        .target(
            name: "FleetTestSupport",
            dependencies: ["Mosquitto"],
            swiftSettings: tsanShadow
        ),
        .executableTarget(
            name: "mqtt-bench",
            dependencies: [
                "Mosquitto",
                "CMosquitto",
                "FleetTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "fleet-sim",
            dependencies: [
                "MassageAgent", "MassageEngine", "FleetProtocol", "Mosquitto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(name: "engine-bench", dependencies: ["MassageEngine", "MassageEngineTesting"]),
        .executableTarget(
            name: "fleet-bench",
            dependencies: [
                "Mosquitto", "FleetProtocol", "FleetTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "FleetTestSupportTests", dependencies: ["FleetTestSupport"]),
        .testTarget(name: "MosquittoTests", dependencies: ["Mosquitto", "FleetTestSupport"]),
        .testTarget(name: "DeploymentTests", dependencies: ["Mosquitto", "FleetProtocol", "FleetTestSupport"]),
        .testTarget(name: "MassageEngineTests", dependencies: ["MassageEngine", "MassageEngineTesting"]),
        .testTarget(name: "FleetProtocolTests", dependencies: ["FleetProtocol"]),
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
