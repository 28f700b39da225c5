import FleetTestSupport
import Foundation
import Testing

/// `massager-controller check` against `massager-controller serve`, both
/// as processes, the test playing the person at the stop button.
@Suite("Conformance check", .serialized, .tags(.e2e))
struct ConformanceCheckTests {
    /// Starts a controller, runs the check against it (pressing and letting
    /// go of the stop button when asked), returns the check's exit status and output.
    func check(serveArguments: [String] = [], checkArguments: [String] = []) async throws -> (FleetTestSupport.ExitStatus, String) {
        let controller = try ProcessRunner.start(
            BuildProducts.executable(named: "massager-controller"),
            arguments: ["serve", "--tcp", "127.0.0.1:0", "--watchdog-ms", "200"] + serveArguments, standardInput: true)
        defer { controller.kill() }
        try await controller.waitForOutput("listening on 127.0.0.1:")
        let port = try #require(controller.standardOutput().split(separator: "\n").first
            .flatMap { $0.split(separator: ":").last }.flatMap { Int($0) })
        let check = try ProcessRunner.start(
            BuildProducts.executable(named: "massager-controller"),
            arguments: ["check", "--tcp", "127.0.0.1:\(port)", "--button-wait-s", "3"] + checkArguments)
        defer { check.kill() }
        var pressed = false, letGo = false
        try await waitUntil(timeout: .seconds(60), "the check finishes") {
            let out = check.standardOutput()
            if !pressed, out.contains("ACTION: press the stop button") { try controller.write("press\n"); pressed = true }
            if !letGo, out.contains("ACTION: let go of the stop button") { try controller.write("letgo\n"); letGo = true }
            return !check.isRunning
        }
        let status = try await check.waitForExit()
        return (status, check.standardOutput() + check.standardError())
    }

    @Test("the conformance check passes against the reference controller, one PASS line per duty")
    func passes() async throws {
        let (status, output) = try await check()
        #expect(status.succeeded, "\(output)")
        #expect(output.contains("PASS ceilings"))
        #expect(output.contains("PASS watchdog"))
        #expect(output.contains("PASS stop-button"))
    }

    @Test("the conformance check fails against a controller with a duty disabled, naming the duty", arguments: ["watchdog", "ceilings", "stop-button"])
    func failsWithDutyDisabled(duty: String) async throws {
        let (status, output) = try await check(serveArguments: ["--disable-duty", duty], checkArguments: ["--duty", duty])
        #expect(!status.succeeded, "\(output)")
        #expect(output.contains("FAIL \(duty)"), "\(output)")
    }
}
