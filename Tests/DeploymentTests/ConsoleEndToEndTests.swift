import FleetTestSupport
import Foundation
import Mosquitto
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The built `fleet-console`, installed as docs/operations.md says: the
/// console bundle provision.sh wrote (broker.yaml merged into console.yaml)
/// and the tokens file of `provision.sh token`, against the shipped broker
/// config.
@Suite("fleet-console with provisioned credentials and tokens", .tags(.e2e))
struct ConsoleEndToEndTests {
    @Test("the console connects with its bundle; tokens from the tokens file hold, scoped to their sites; a readable tokens file is refused")
    func provisionedConsole() async throws {
        let executable = try BuildProducts.executable(named: "fleet-console")
        let fleet = try await ProvisionedFleet.create()
        let broker = try await fleet.startBroker()
        defer { broker.stopNow() }
        let north = try await fleet.device("clinic-north", "massager-01", on: broker)
        let south = try await fleet.device("spa-south", "massager-01", on: broker)
        try await fleet.provision(["token", "head-office", "admin"])
        try await fleet.provision(["token", "north-desk", "viewer", "clinic-north"])
        func token(_ name: String) throws -> String {
            try String(contentsOf: fleet.url.appendingPathComponent("console/tokens/\(name).token"), encoding: .utf8)
                .trimmingCharacters(in: .newlines)
        }

        // Both massagers announce themselves (retained), as agents do.
        for device in [north, south] {
            let client = try await connectedClient(device.settings, name: device.identity)
            let status = #"{"state": "online", "agent_version": "1.0.0", "epoch": 1, "seq": 1, "ts": "2025-03-01T10:00:00.000Z", "programs": ["calf-release"], "config_version": 0, "capabilities": []}"#
            try await client.publish(device.topic("status"), payload: bytes(status), qos: .atLeastOnce, retain: true)
            await client.shutdown()
        }

        // "Install": the console bundle and the tokens file in one private directory.
        let etc = try TemporaryDirectory(prefix: "etc-fleet-console")
        let installed = etc.file("fleet-console")
        try FileManager.default.copyItem(at: fleet.consoleDirectory, to: installed)
        try FileManager.default.copyItem(
            at: fleet.url.appendingPathComponent("console/tokens.yaml"), to: installed.appendingPathComponent("tokens.yaml"))
        let brokerYAML = try String(contentsOf: installed.appendingPathComponent("broker.yaml"), encoding: .utf8)
        let port = try #require(broker.tlsPort)
        let httpPort = try freeLoopbackPort()
        let config = brokerYAML.replacingOccurrences(of: "  port: 8883\n", with: "  port: \(port)\n") + """
            http: 127.0.0.1:\(httpPort)
            database: \(etc.file("fleet-console.sqlite").path)
            sites:
              - {id: clinic-north, name: Clinic North, timezone: Europe/Berlin}
              - {id: spa-south, name: Spa South, timezone: Europe/Madrid}
            tokens_file: tokens.yaml
            log_level: info

            """
        #expect(config.contains("  port: \(port)\n"))
        let configFile = installed.appendingPathComponent("console.yaml")
        try config.write(to: configFile, atomically: true, encoding: .utf8)

        let console = try ProcessRunner.start(
            executable, arguments: ["serve", "--config", configFile.path], environment: ["FLEET_CONSOLE_ADMIN_TOKEN": ""],
            outputDirectory: etc.url)
        defer { console.kill() }
        let api = "http://127.0.0.1:\(httpPort)"
        try await waitUntil(timeout: .seconds(30), "the console's API to answer") {
            if !console.isRunning {
                throw FixtureError("fleet-console exited (\(console.exitStatus.map(\.description) ?? "?")): \(console.standardError())")
            }
            return (try? await get("\(api)/healthz"))?.status == 200
        }
        try await broker.waitForLog(containing: "as console-console (p5")

        let admin = try token("head-office")
        let everything = try await waitForValue(timeout: .seconds(15), "the console to list both massagers") {
            let response = try await get("\(api)/api/v1/devices", token: admin)
            let devices = response.devices
            return devices.count == 2 ? devices : nil
        }
        #expect(Set(everything) == ["clinic-north/massager-01", "spa-south/massager-01"])
        let scoped = try await get("\(api)/api/v1/devices", token: try token("north-desk"))
        #expect(scoped.status == 200)
        #expect(scoped.devices == ["clinic-north/massager-01"])
        // One character changed (a token that already ends in "0" gets a "1": 1 in 16 did, and passed as itself).
        #expect(try await get("\(api)/api/v1/devices", token: String(admin.dropLast()) + (admin.hasSuffix("0") ? "1" : "0")).status == 401)
        #expect(try await get("\(api)/api/v1/devices", token: try token("north-desk") + admin).status == 401)
        #expect(try await get("\(api)/api/v1/devices").status == 401)
        #expect(!console.standardError().contains(admin), "the console must not log tokens")

        // Issue 20, items 10 and 18: provision.sh revoke has the console forget the device.
        // Without the console's URL it does the broker part and prints the command to run.
        let tokens = fleet.url.appendingPathComponent("console/tokens").path
        let untold = try await fleet.provision(["revoke", "spa-south", "massager-01"] + fleet.reloadOptions(broker), environment: ["FLEET_CONSOLE_API": ""])
        #expect(untold.standardOutput.contains("fleet-console forget spa-south/massager-01"), "\(untold)")
        // With the URL and an admin token file, the console forgets it: revoked, not online.
        let told = try await fleet.provision(
            ["revoke", "clinic-north", "massager-01", "--console", api, "--console-token-file", "\(tokens)/head-office.token"] + fleet.reloadOptions(broker))
        #expect(told.standardOutput.contains("the console at \(api) forgot clinic-north/massager-01"), "\(told)")
        let revoked = try await get("\(api)/api/v1/devices?state=revoked", token: admin)
        #expect(revoked.devices == ["clinic-north/massager-01"], "\(String(decoding: revoked.body, as: UTF8.self))")
        // Provisioning a revoked id again tells the console too; a viewer token is refused,
        // and provision.sh says so (exit 1) after writing the bundle, naming the command.
        let refusedForget = try await fleet.provision(
            ["device", "spa-south", "massager-01", "--broker", "localhost:\(port)", "--console", api, "--console-token-file", "\(tokens)/north-desk.token"]
                + fleet.reloadOptions(broker), mustSucceed: false)
        #expect(refusedForget.status == .exited(1), "\(refusedForget)")
        #expect(refusedForget.standardError.contains("did not forget spa-south/massager-01 (HTTP 403)"), "\(refusedForget)")
        #expect(refusedForget.standardError.contains("fleet-console forget spa-south/massager-01"), "\(refusedForget)")
        #expect(FileManager.default.fileExists(atPath: fleet.url.appendingPathComponent("devices/spa-south/massager-01/agent.yaml").path))
        let viewerToken = try token("north-desk")
        #expect(!fleet.output.contains(admin) && !fleet.output.contains(viewerToken), "provision.sh never prints a token")

        #expect(try await console.stop(gracePeriod: .seconds(10)) == .exited(0))

        // The same console refuses to start once the tokens file is readable by others.
        let tokensFile = installed.appendingPathComponent("tokens.yaml")
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: tokensFile.path)
        let refused = try ProcessRunner.start(executable, arguments: ["serve", "--config", configFile.path], outputDirectory: etc.url)
        #expect(try await refused.waitForExit(timeout: .seconds(30)) == .exited(2))
        #expect(refused.standardError().contains("readable by group or others"), "\(refused.standardError())")
    }

    @Test("SIGHUP reloads the tokens file: a token revoke-token removed gets 401 at once and its dashboard session ends; a bad file keeps the old tokens and names the key (issue 20, item 13)")
    func tokensReloadOnSIGHUP() async throws {
        let executable = try BuildProducts.executable(named: "fleet-console")
        let fleet = try await ProvisionedFleet.create()
        let broker = try await fleet.startBroker()
        defer { broker.stopNow() }
        try await fleet.provision(["token", "head-office", "admin"])
        try await fleet.provision(["token", "north-desk", "viewer", "clinic-north"])
        func token(_ name: String) throws -> String {
            try String(contentsOf: fleet.url.appendingPathComponent("console/tokens/\(name).token"), encoding: .utf8)
                .trimmingCharacters(in: .newlines)
        }
        let admin = try token("head-office"), desk = try token("north-desk")

        // Installed as operations.md says; the tokens file is provision.sh's own.
        let etc = try TemporaryDirectory(prefix: "etc-fleet-console")
        let installed = etc.file("fleet-console")
        try FileManager.default.copyItem(at: fleet.consoleDirectory, to: installed)
        let tokensFile = fleet.url.appendingPathComponent("console/tokens.yaml")
        let brokerYAML = try String(contentsOf: installed.appendingPathComponent("broker.yaml"), encoding: .utf8)
        let port = try #require(broker.tlsPort)
        let httpPort = try freeLoopbackPort()
        let configFile = installed.appendingPathComponent("console.yaml")
        try (brokerYAML.replacingOccurrences(of: "  port: 8883\n", with: "  port: \(port)\n") + """
            http: 127.0.0.1:\(httpPort)
            database: \(etc.file("fleet-console.sqlite").path)
            sites:
              - {id: clinic-north, name: Clinic North, timezone: Europe/Berlin}
            tokens_file: \(tokensFile.path)

            """).write(to: configFile, atomically: true, encoding: .utf8)
        let console = try ProcessRunner.start(
            executable, arguments: ["serve", "--config", configFile.path], environment: ["FLEET_CONSOLE_ADMIN_TOKEN": ""],
            outputDirectory: etc.url)
        defer { console.kill() }
        let api = "http://127.0.0.1:\(httpPort)"
        try await waitUntil(timeout: .seconds(30), "the console's API to answer") {
            if !console.isRunning {
                throw FixtureError("fleet-console exited (\(console.exitStatus.map(\.description) ?? "?")): \(console.standardError())")
            }
            return (try? await get("\(api)/healthz"))?.status == 200
        }
        #expect(try await get("\(api)/api/v1/devices", token: desk).status == 200)
        let session = try await signIn(api, token: desk)
        #expect(try await dashboard(api, session: session) == "200", "signed in")
        let pid = console.processIdentifier

        // A bad file (a token without sites): the old tokens stay, the log names the key.
        let good = try String(contentsOf: tokensFile, encoding: .utf8)
        try (good + "  - {name: \"broken\", sha256: \"\(String(repeating: "ab", count: 32))\", role: viewer}\n")
            .write(to: tokensFile, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: tokensFile.path)
        console.send(SIGHUP)
        try await console.waitForOutput("tokens_file: tokens[2].sites", in: .standardError)
        #expect(console.standardError().contains("API tokens are unchanged"), "\(console.standardError())")
        #expect(try await get("\(api)/api/v1/devices", token: desk).status == 200, "the old tokens still hold")
        #expect(try await dashboard(api, session: session) == "200", "and so does the session")
        try good.write(to: tokensFile, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: tokensFile.path)

        // revoke-token, then `systemctl reload` (ExecReload: SIGHUP).
        try await fleet.provision(["revoke-token", "north-desk"])
        console.send(SIGHUP)
        try await console.waitForOutput("tokens.ended=north-desk", in: .standardError)
        #expect(try await get("\(api)/api/v1/devices", token: desk).status == 401, "the removed token is refused at once")
        #expect(try await dashboard(api, session: session) == "303", "its dashboard session ended (sent to /login)")
        #expect(try await get("\(api)/api/v1/devices", token: admin).status == 200, "the others still hold")
        #expect(console.isRunning && console.processIdentifier == pid, "reloaded, not restarted")
        #expect(try await console.stop(gracePeriod: .seconds(10)) == .exited(0))
        #expect(!console.standardError().contains(desk) && !console.standardError().contains(admin), "tokens never reach the log")
    }

    /// Signs in to the dashboard with `token` (fed to curl on standard
    /// input, never its command line) and returns the session cookie.
    func signIn(_ api: String, token: String) async throws -> String {
        let run = try await ProcessRunner.run(
            tool: "curl", arguments: ["-sS", "-o", "/dev/null", "-D", "-", "--data-urlencode", "token@-", "\(api)/login"],
            standardInput: token)
        let line = run.standardOutput.split(separator: "\r\n").first { $0.lowercased().hasPrefix("set-cookie: fc_session=") }
        let cookie = try #require(line.map { String($0.dropFirst("set-cookie: ".count).prefix { $0 != ";" }) }, "\(run)")
        return cookie
    }

    /// The status of the dashboard's overview for a session cookie ("303": sent to sign in).
    func dashboard(_ api: String, session cookie: String) async throws -> String {
        let run = try await ProcessRunner.run(
            tool: "curl", arguments: ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Cookie: \(cookie)", "\(api)/"])
        return run.standardOutput
    }

    struct Response {
        let status: Int
        let body: Data
        /// `site/device` of each entry of `{"devices": [...]}`.
        var devices: [String] {
            let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
            let list = object?["devices"] as? [[String: Any]] ?? []
            return list.compactMap { entry in
                guard let site = entry["site"] as? String, let device = entry["device"] as? String else { return nil }
                return "\(site)/\(device)"
            }
        }
    }

    func get(_ url: String, token: String? = nil) async throws -> Response {
        var request = URLRequest(url: URL(string: url)!, timeoutInterval: 5)
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let (body, response) = try await URLSession.shared.data(for: request)
        return Response(status: (response as? HTTPURLResponse)?.statusCode ?? 0, body: body)
    }
}
