// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "MassageFleet",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
    ],
    targets: [
        // C shim → Swift wrapper
        .systemLibrary(
            name: "CMosquitto",
            pkgConfig: "libmosquitto",
            providers: [.apt(["libmosquitto-dev"])]
        ),
        .target(
            name: "Mosquitto",
            dependencies: [
                "CMosquitto",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        // Pure domain: no MQTT, no database.
        .target(
            name: "MassageEngine",
            dependencies: [.product(name: "Yams", package: "Yams")]
        ),
        // The wire contract shared by agent and console.
        .target(
            name: "FleetProtocol",
            dependencies: ["MassageEngine"]
        ),
        // Fixtures shared by every test target (real mosquitto, temp dirs).
        .target(
            name: "FleetTestSupport",
            dependencies: ["Mosquitto"]
        ),
        .executableTarget(
            name: "mqtt-bench",
            dependencies: [
                "Mosquitto",
                "CMosquitto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "MosquittoTests", dependencies: ["Mosquitto", "FleetTestSupport"]),
        .testTarget(name: "MassageEngineTests", dependencies: ["MassageEngine"]),
        .testTarget(name: "FleetProtocolTests", dependencies: ["FleetProtocol"]),
    ]
)
