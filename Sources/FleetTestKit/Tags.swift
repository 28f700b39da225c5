import Testing

// The test tiers. A test or suite with none of these tags is the fast
// tier: in-process, no child process, no broker, no database server, and
// no real-time waits longer than a moment. `deploy/test.sh --fast` runs
// only that tier and `--tier NAME` one tier (README, "Test tiers": Swift
// 6.3.1's `swift test` has no tag filter, so the script matches names).
extension Tag {
    /// End to end: built executables run as processes, or a real mosquitto
    /// broker (the fixtures of FleetTestSupport).
    @Tag public static var e2e: Self
    /// Starts or needs the PostgreSQL test server (`PostgresServer`).
    @Tag public static var postgres: Self
    /// Drives the dashboard in a real Chromium (Playwright).
    @Tag public static var browser: Self
    /// The chaos run: agents, console and broker killed on a seeded plan.
    @Tag public static var chaos: Self
    /// Runs in real time against a clock it cannot speed up (a Modbus line's
    /// timeouts, a controller's watchdog): seconds per test even in process.
    @Tag public static var slow: Self
}
