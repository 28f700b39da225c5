// swift-tools-version:6.0
// libFuzzer targets for MassageFleet (issue 9, item 5). A package of its own
// so the root package's `swift build` never sees these targets; built with
// the fuzzer and address sanitizers by deploy/fuzz.sh:
//
//   swift build --package-path Tests/Fuzz --scratch-path .build-fuzz \
//       -c debug \
//       --sanitize fuzzer -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=address
//
// Each executable defines `LLVMFuzzerTestOneInput`; libFuzzer supplies `main`.
import PackageDescription

let package = Package(
    name: "MassageFleetFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "MassageFleet", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "fuzz-command",
            dependencies: [.product(name: "FleetProtocol", package: "MassageFleet")],
            path: "Sources/fuzz-command"
        ),
        .executableTarget(
            name: "fuzz-agent-config",
            dependencies: [.product(name: "MassageAgent", package: "MassageFleet")],
            path: "Sources/fuzz-agent-config"
        ),
        .executableTarget(
            name: "fuzz-desired-config",
            dependencies: [
                .product(name: "FleetProtocol", package: "MassageFleet"),
                .product(name: "MassageAgent", package: "MassageFleet"),
                .product(name: "MassageEngine", package: "MassageFleet"),
            ],
            path: "Sources/fuzz-desired-config"
        ),
        .executableTarget(
            name: "fuzz-rollout",
            dependencies: [
                .product(name: "FleetConsole", package: "MassageFleet"),
                .product(name: "FleetProtocol", package: "MassageFleet"),
                .product(name: "MassageEngine", package: "MassageFleet"),
            ],
            path: "Sources/fuzz-rollout"
        ),
        .executableTarget(
            name: "fuzz-ingest",
            dependencies: [
                .product(name: "FleetConsole", package: "MassageFleet"),
                .product(name: "FleetProtocol", package: "MassageFleet"),
                .product(name: "Mosquitto", package: "MassageFleet"),
            ],
            path: "Sources/fuzz-ingest"
        ),
    ]
)
