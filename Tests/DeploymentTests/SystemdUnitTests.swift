import FleetTestSupport
import Foundation
import Testing

/// deploy/systemd/*.service, checked by systemd's own tools. They run
/// against a throwaway root (`--root`): the system's unit files, the
/// shipped units in etc/systemd/system, and stand-ins for the executables
/// at the paths the units name, so nothing on this machine is touched and
/// the units are checked exactly as shipped.
@Suite("shipped systemd units")
struct SystemdUnitTests {
    static let units = ["massage-agent.service", "fleet-console.service"]

    /// A root with the system's units, the shipped ones, and the executables.
    func fakeRoot(_ editing: ((String, String) -> String)? = nil) throws -> TemporaryDirectory {
        let root = try TemporaryDirectory(prefix: "systemd-root")
        let fileManager = FileManager.default
        let systemUnits = root.file("usr/lib/systemd")
        try fileManager.createDirectory(at: systemUnits, withIntermediateDirectories: true)
        try fileManager.copyItem(at: URL(fileURLWithPath: "/usr/lib/systemd/system"), to: systemUnits.appendingPathComponent("system"))
        let units = root.file("etc/systemd/system")
        try fileManager.createDirectory(at: units, withIntermediateDirectories: true)
        for unit in Self.units {
            var text = try String(contentsOf: Deploy.systemdDirectory.appendingPathComponent(unit), encoding: .utf8)
            if let editing { text = editing(unit, text) }
            try text.write(to: units.appendingPathComponent(unit), atomically: true, encoding: .utf8)
        }
        let binaries = root.file("usr/local/bin")
        try fileManager.createDirectory(at: binaries, withIntermediateDirectories: true)
        for name in ["massage-agent", "fleet-console"] {
            let path = binaries.appendingPathComponent(name).path
            #expect(fileManager.createFile(atPath: path, contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755]))
        }
        // The console's ExecReload (/bin/kill, from procps on every Debian system).
        let bin = root.file("bin")
        try fileManager.createDirectory(at: bin, withIntermediateDirectories: true)
        #expect(fileManager.createFile(atPath: bin.appendingPathComponent("kill").path, contents: Data("#!/bin/sh\n".utf8),
                                       attributes: [.posixPermissions: 0o755]))
        return root
    }

    func systemdAnalyze(_ arguments: [String]) async throws -> ProcessRunner.Completed {
        guard let tool = ExecutableLocator.findIfPresent("systemd-analyze") else {
            throw FixtureError("systemd-analyze is not installed: apt-get install systemd (the units are checked with it)")
        }
        return try await ProcessRunner.run(tool, arguments: arguments, environment: ["SYSTEMD_LOG_COLOR": "0"], timeout: .seconds(60))
    }

    @Test("systemd-analyze verify accepts both units without a single warning")
    func verify() async throws {
        let root = try fakeRoot()
        let result = try await systemdAnalyze(["verify", "--root=\(root.path)"] + Self.units)
        #expect(result.succeeded, "\(result)")
        #expect(result.standardOutput.isEmpty && result.standardError.isEmpty, "\(result)")

        // The same check notices a mistake (so an empty output means something).
        let broken = try fakeRoot { unit, text in
            unit == "massage-agent.service" ? text.replacingOccurrences(of: "ProtectSystem=strict", with: "ProtectSystem=stricter") : text
        }
        let complaint = try await systemdAnalyze(["verify", "--root=\(broken.path)"] + Self.units)
        #expect(complaint.standardError.contains("massage-agent.service"), "\(complaint)")
    }

    @Test("systemd-analyze security rates both units' exposure 2.0 or lower", arguments: units)
    func exposure(unit: String) async throws {
        let root = try fakeRoot()
        let result = try await systemdAnalyze(["security", "--offline=yes", "--root=\(root.path)", "--no-pager", unit])
        #expect(result.succeeded, "\(result)")
        let line = try #require(result.standardOutput.split(separator: "\n").first { $0.contains("Overall exposure level") })
        let score = try #require(line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) })
        #expect(score <= 2.0, "\(line)")
    }

    @Test("both units run as a dedicated user, sandboxed, restart on failure and stop with SIGTERM", arguments: units)
    func directives(unit: String) throws {
        let text = try String(contentsOf: Deploy.systemdDirectory.appendingPathComponent(unit), encoding: .utf8)
        let lines = Set(text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) })
        let name = unit.replacingOccurrences(of: ".service", with: "")
        let required = [
            "User=\(name)", "Group=\(name)", "StateDirectory=\(name)", "StateDirectoryMode=0700", "UMask=0077",
            "Restart=on-failure", "RestartPreventExitStatus=2", "KillSignal=SIGTERM",
            "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
            "ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectKernelLogs=yes", "ProtectControlGroups=yes",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "CapabilityBoundingSet=", "AmbientCapabilities=",
            "SystemCallFilter=@system-service", "SystemCallArchitectures=native", "MemoryDenyWriteExecute=yes",
        ]
        for directive in required {
            #expect(lines.contains(directive), "\(unit) lacks \(directive)")
        }
        #expect(!lines.contains { $0.hasPrefix("User=root") || $0.hasPrefix("DynamicUser=") })
        #expect(lines.contains { $0.hasPrefix("ExecStart=/usr/local/bin/\(name) ") })
    }

    /// Issue 20, item 2: a console stuck on one message (ingest stalled) stops
    /// sending WATCHDOG=1, and systemd restarts it instead of leaving it up.
    @Test("the console's unit waits for READY=1 and restarts it when its watchdog (fed by ingest's progress) stops")
    func consoleWatchdog() throws {
        let text = try String(contentsOf: Deploy.systemdDirectory.appendingPathComponent("fleet-console.service"), encoding: .utf8)
        let lines = Set(text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) })
        for directive in ["Type=notify", "NotifyAccess=main", "WatchdogSec=30s", "Restart=on-failure"] {
            #expect(lines.contains(directive), "fleet-console.service lacks \(directive)")
        }
    }

    /// Issue 20, item 13: revoking an API token must not wait for a restart.
    @Test("the console's unit reloads the API tokens with SIGHUP (systemctl reload)")
    func consoleReload() throws {
        let text = try String(contentsOf: Deploy.systemdDirectory.appendingPathComponent("fleet-console.service"), encoding: .utf8)
        let lines = Set(text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) })
        #expect(lines.contains("ExecReload=/bin/kill -HUP $MAINPID"), "fleet-console.service lacks ExecReload")
    }
}
