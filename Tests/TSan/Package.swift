// swift-tools-version:6.0
// The ThreadSanitizer pass (issue 20, item 15): the MQTT client's suites,
// where C callbacks, the event-loop threads and Swift tasks meet, and the
// agent's unit suites (its outbox, engine storage and configuration, which
// drive the client and SQLite from several threads), built with
// -sanitize=thread. A package of its own so that only the client and its
// fixtures are built with TSan (minutes), not the whole product (most of an
// hour). deploy/test.sh runs it:
//
//   MASSAGEFLEET_TSAN=1 swift build --package-path Tests/TSan \
//       --scratch-path .build-tsan --build-tests --sanitize=thread
//
// MASSAGEFLEET_TSAN=1 makes the root Package.swift swap Synchronization's
// Mutex for a pthread-backed one TSan can see (Mutex+ThreadSanitizer.swift).
// MosquittoTests and MassageAgentTests here are links to the root's test
// directories: the same tests. (The agent's end-to-end suites, which run
// built executables, are left to the plain passes: deploy/test.sh filters.)
import PackageDescription

let package = Package(
    name: "MassageFleetTSan",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "MassageFleet", path: "../.."),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    ],
    targets: [
        .testTarget(
            name: "MosquittoTests",
            dependencies: [
                .product(name: "Mosquitto", package: "MassageFleet"),
                .product(name: "FleetTestSupport", package: "MassageFleet"),
            ],
            path: "MosquittoTests"
        ),
        .testTarget(
            name: "MassageAgentTests",
            dependencies: [
                .product(name: "MassageAgent", package: "MassageFleet"),
                .product(name: "MassageEngine", package: "MassageFleet"),
                .product(name: "MassageEngineTesting", package: "MassageFleet"),
                .product(name: "FleetProtocol", package: "MassageFleet"),
                .product(name: "FleetSettings", package: "MassageFleet"),
                .product(name: "FleetTestSupport", package: "MassageFleet"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            path: "MassageAgentTests"
        ),
    ]
)
