// swift-tools-version:6.0
// The ThreadSanitizer pass (issue 20, item 15): the MQTT client's suites,
// where C callbacks, the event-loop threads and Swift tasks meet, built with
// -sanitize=thread. A package of its own so that only the client and its
// fixtures are built with TSan (minutes), not the whole product (most of an
// hour). deploy/test.sh runs it:
//
//   MASSAGEFLEET_TSAN=1 swift build --package-path Tests/TSan \
//       --scratch-path .build-tsan --build-tests --sanitize=thread
//
// MASSAGEFLEET_TSAN=1 makes the root Package.swift swap Synchronization's
// Mutex for a pthread-backed one TSan can see (Mutex+ThreadSanitizer.swift).
// MosquittoTests here is a link to Tests/MosquittoTests: the same tests.
import PackageDescription

let package = Package(
    name: "MassageFleetTSan",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "MassageFleet", path: "../.."),
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
    ]
)
