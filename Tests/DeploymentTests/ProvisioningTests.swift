import FleetTestSupport
import Foundation
import Mosquitto
import Testing

/// deploy/provision.sh: what it writes, that re-running it changes nothing,
/// that revoking works on a running broker, and how it refuses bad input.
@Suite("provision.sh", .tags(.e2e))
struct ProvisioningTests {
    @Test("after revoke the device cannot connect, its live connection is dropped, and the broker kept running")
    func revokeOnRunningBroker() async throws {
        let fleet = try await ProvisionedFleet.create()
        let broker = try await fleet.startBroker()
        defer { broker.stopNow() }
        let a = try await fleet.device("clinic-north", "massager-01", on: broker)
        let b = try await fleet.device("clinic-north", "massager-02", on: broker)
        let onDevice = try TemporaryDirectory(prefix: "on-the-device")
        let copy = try a.installed(into: onDevice).settings
        let pid = try #require(broker.processIdentifier)

        let live = try await connectedClient(copy, name: "a-live")
        let refusedCertificates = broker.log().components(separatedBy: "certificate verify failed").count
        let result = try await fleet.revoke("clinic-north", "massager-01", on: broker)
        #expect(result.standardOutput.contains("revoked clinic-north/massager-01"))
        #expect(result.standardOutput.contains("reloaded the broker (SIGHUP to mosquitto, pid \(pid))"))

        // The broker drops the connection when it reloads, and the client's
        // own reconnects are refused from then on (its certificate is revoked).
        try await waitForState(live, "to be disconnected by the reload") { !$0.isConnected }
        try await waitUntil(timeout: .seconds(10), "a reconnect of the revoked device to be refused") {
            broker.log().components(separatedBy: "certificate verify failed").count > refusedCertificates
        }
        #expect(!live.isConnected)
        await live.shutdown()

        // Its own files, as kept by a thief: the certificate is revoked
        // (TLS fails before MQTT), and so is the password.
        try await expectCertificateRefused(by: broker, "the revoked device's own files") {
            try await refusedConnection(copy, name: "stolen")
        }
        try await expectCertificateRefused(by: broker, "a revoked certificate with another device's valid password") {
            try await refusedConnection(copy, name: "stolen-cert") {
                $0.username = b.settings.username
                $0.password = b.settings.password
            }
        }
        let revokedPassword = try await refusedConnection(b.settings, name: "stolen-password") {
            $0.username = copy.username
            $0.password = copy.password
        }
        #expect(revokedPassword?.code == .notAuthorized, "the revoked password with a valid certificate")

        // Same broker process, still serving the others.
        #expect(broker.processIdentifier == pid)
        let other = try await connectedClient(b.settings, name: "b")
        try await other.publish(b.topic("status"), payload: bytes("still here"), qos: .atLeastOnce)
        await other.shutdown()

        // What is left of it in the files.
        #expect(!FileManager.default.fileExists(atPath: a.directory.path))
        let passwd = try String(contentsOf: fleet.brokerDirectory.appendingPathComponent("passwd"), encoding: .utf8)
        #expect(!passwd.contains("clinic-north.massager-01:"))
        #expect(passwd.contains("clinic-north.massager-02:"))
        let acl = try String(contentsOf: fleet.brokerDirectory.appendingPathComponent("acl"), encoding: .utf8)
        #expect(!acl.contains("user clinic-north.massager-01\n"))
        #expect(acl.contains("user clinic-north.massager-02\n"))
        let revoked = try String(contentsOf: fleet.caDirectory.appendingPathComponent("revoked.txt"), encoding: .utf8)
        #expect(revoked.contains("clinic-north.massager-01\tcessationOfOperation"))
    }

    @Test("after revoke-console the console instance cannot connect, its live connection is dropped, its reply grants are gone, and the broker and the other console carry on (issue 20, item 13)")
    func revokeConsoleOnRunningBroker() async throws {
        let fleet = try await ProvisionedFleet.create()
        let broker = try await fleet.startBroker()
        defer { broker.stopNow() }
        let device = try await fleet.device("clinic-north", "massager-01", on: broker)
        try await fleet.provisionAndWaitForReload(["console", "replica-2"], on: broker)
        // The instance's files as installed on its host (or kept by whoever leaked them).
        let host = try TemporaryDirectory(prefix: "etc-fleet-console-replica-2")
        let installed = host.file("replica-2")
        try FileManager.default.copyItem(at: fleet.url.appendingPathComponent("console/replica-2", isDirectory: true), to: installed)
        var copy = try BrokerSettingsFile(installed.appendingPathComponent("broker.yaml"))
        copy.port = try #require(broker.tlsPort)
        let pid = try #require(broker.processIdentifier)
        var acl = try String(contentsOf: fleet.brokerDirectory.appendingPathComponent("acl"), encoding: .utf8)
        #expect(acl.contains("user console-replica-2\n"))
        #expect(acl.contains("_console/reply/replica-2/clinic-north/massager-01\n"))

        let live = try await connectedClient(copy, name: "replica-2-live")
        let refusedCertificates = broker.log().components(separatedBy: "certificate verify failed").count
        let result = try await fleet.provisionAndWaitForReload(["revoke-console", "replica-2"], on: broker)
        #expect(result.standardOutput.contains("revoked console replica-2"), "\(result)")
        #expect(result.standardOutput.contains("reloaded the broker (SIGHUP to mosquitto, pid \(pid))"), "\(result)")

        try await waitForState(live, "to be disconnected by the reload") { !$0.isConnected }
        try await waitUntil(timeout: .seconds(10), "a reconnect of the revoked console to be refused") {
            broker.log().components(separatedBy: "certificate verify failed").count > refusedCertificates
        }
        await live.shutdown()
        try await expectCertificateRefused(by: broker, "the revoked console's own files") {
            try await refusedConnection(copy, name: "leaked-console")
        }
        let console = try fleet.consoleSettings(broker)
        let leakedPassword = try await refusedConnection(console, name: "leaked-password") {
            $0.username = copy.username
            $0.password = copy.password
        }
        #expect(leakedPassword?.code == .notAuthorized, "the revoked password with a valid certificate: \(String(describing: leakedPassword))")

        // The other console instance and the devices carry on, on the same broker process.
        #expect(broker.processIdentifier == pid)
        let other = try await connectedClient(console, name: "console")
        await other.shutdown()
        let stillThere = try await connectedClient(device.settings, name: "device")
        try await stillThere.publish(device.topic("status"), payload: bytes("still here"), qos: .atLeastOnce)
        await stillThere.shutdown()

        #expect(!FileManager.default.fileExists(atPath: fleet.url.appendingPathComponent("console/replica-2").path))
        let passwd = try String(contentsOf: fleet.brokerDirectory.appendingPathComponent("passwd"), encoding: .utf8)
        #expect(!passwd.contains("console-replica-2:"))
        #expect(passwd.contains("console-console:"))
        acl = try String(contentsOf: fleet.brokerDirectory.appendingPathComponent("acl"), encoding: .utf8)
        #expect(!acl.contains("console-replica-2"))
        #expect(!acl.contains("_console/reply/replica-2/"), "no device may still write the revoked console's reply topics")
        #expect(acl.contains("user console-console\n"))
        #expect(acl.contains("_console/reply/console/clinic-north/massager-01\n"))
        let revoked = try String(contentsOf: fleet.caDirectory.appendingPathComponent("revoked.txt"), encoding: .utf8)
        #expect(revoked.contains("console-replica-2\tcessationOfOperation"))

        let again = try await fleet.provision(["revoke-console", "replica-2", "--no-reload"])
        #expect(again.standardOutput.contains("console replica-2 was not provisioned (nothing to revoke)"))
    }

    @Test("revoke is idempotent, and says so loudly when the broker could not be reloaded")
    func revokeEdgeCases() async throws {
        let fleet = try await ProvisionedFleet.create()
        try await fleet.provision(["device", "clinic-north", "massager-01", "--no-reload"])
        let failed = try await fleet.provision(
            ["revoke", "clinic-north", "massager-01", "--pid-file", fleet.url.appendingPathComponent("no-such.pid").path],
            mustSucceed: false)
        #expect(failed.status == .exited(1))
        #expect(failed.standardError.contains("revoked in the files but the broker was NOT reloaded"))
        let again = try await fleet.provision(["revoke", "clinic-north", "massager-01", "--no-reload"])
        #expect(again.standardOutput.contains("was not provisioned (nothing to revoke)"))
        // A stale pid file must not make it signal some other process.
        let stale = fleet.url.appendingPathComponent("stale.pid")
        try "\(getpid())\n".write(to: stale, atomically: true, encoding: .utf8)
        let notMosquitto = try await fleet.provision(["reload", "--pid-file", stale.path], mustSucceed: false)
        #expect(!notMosquitto.succeeded)
        #expect(notMosquitto.standardError.contains("is not a running mosquitto"))
    }

    @Test("running init, device and console again changes nothing")
    func idempotent() async throws {
        let fleet = try await ProvisionedFleet.create()
        try await fleet.provision(["device", "clinic-north", "massager-01", "--broker", "broker.example:8883", "--no-reload"])
        let files = ["ca/ca.crt", "ca/ca.key", "broker/server.crt", "broker/server.key", "broker/passwd", "broker/crl.pem",
                     "console/console/broker-password", "console/console/console.crt",
                     "devices/clinic-north/massager-01/password", "devices/clinic-north/massager-01/device.crt",
                     "devices/clinic-north/massager-01/device.key", "devices/clinic-north/massager-01/agent.yaml"]
        func snapshot() throws -> [String: Data] {
            try Dictionary(uniqueKeysWithValues: files.map { ($0, try Data(contentsOf: fleet.url.appendingPathComponent($0))) })
        }
        let before = try snapshot()
        try await fleet.provision(["init", "--no-reload"])
        try await fleet.provision(["init", "--hostname", "localhost", "--ip", "127.0.0.1", "--no-reload"])
        try await fleet.provision(["device", "clinic-north", "massager-01", "--no-reload"])
        try await fleet.provision(["console", "--no-reload"])
        let after = try snapshot()
        for file in files {
            #expect(before[file] == after[file], "\(file) changed")
        }
        let acl = try String(contentsOf: fleet.brokerDirectory.appendingPathComponent("acl"), encoding: .utf8)
        #expect(acl.components(separatedBy: "user clinic-north.massager-01\n").count == 2)
        #expect(acl.components(separatedBy: "user console-console\n").count == 2)
        // The broker address given the first time is kept by the re-run.
        let bundle = try fleet.bundle("clinic-north", "massager-01")
        #expect(bundle.settings.host == "broker.example")
        #expect(bundle.settings.port == 8883)
    }

    @Test("--rotate gives a device a new password and certificate; the old ones stop working")
    func rotate() async throws {
        let fleet = try await ProvisionedFleet.create()
        let broker = try await fleet.startBroker()
        defer { broker.stopNow() }
        let old = try await fleet.device("clinic-north", "massager-01", on: broker)
        let onDevice = try TemporaryDirectory(prefix: "on-the-device")
        let oldCopy = try old.installed(into: onDevice).settings
        let new = try await fleet.device("clinic-north", "massager-01", on: broker, extra: ["--rotate"])
        #expect(new.settings.password != oldCopy.password)

        let client = try await connectedClient(new.settings, name: "rotated")
        await client.shutdown()
        let oldPassword = try await refusedConnection(new.settings, name: "old-password") { $0.password = oldCopy.password }
        #expect(oldPassword?.code == .notAuthorized)
        try await expectCertificateRefused(by: broker, "the superseded certificate with the new password") {
            try await refusedConnection(new.settings, name: "old-certificate") {
                $0.tls = TLSConfiguration(caFile: oldCopy.caFile.path, certificateFile: oldCopy.certificateFile?.path,
                                          keyFile: oldCopy.keyFile?.path)
            }
        }
        let revoked = try String(contentsOf: fleet.caDirectory.appendingPathComponent("revoked.txt"), encoding: .utf8)
        #expect(revoked.contains("clinic-north.massager-01\tsuperseded"))
    }

    @Test("secrets are written 0600 and never appear in its output")
    func secretsPrivate() async throws {
        let fleet = try await ProvisionedFleet.create()
        try await fleet.provision(["device", "clinic-north", "massager-01", "--no-reload"])
        try await fleet.provision(["console", "replica-2", "--no-reload"])
        try await fleet.provision(["token", "head-office", "admin"])
        let secrets = ["ca/ca.key", "broker/server.key", "broker/passwd", "broker/acl", "fleet.env",
                       "console/console/broker-password", "console/console/console.key",
                       "console/replica-2/broker-password", "console/replica-2/console.key",
                       "console/tokens.yaml", "console/tokens/head-office.token",
                       "devices/clinic-north/massager-01/password", "devices/clinic-north/massager-01/device.key"]
        for file in secrets {
            #expect(try mode(of: fleet.url.appendingPathComponent(file)) == 0o600, "\(file)")
        }
        for directory in ["ca", "console", "console/console", "devices", "devices/clinic-north/massager-01"] {
            #expect(try mode(of: fleet.url.appendingPathComponent(directory)) == 0o700, "\(directory)/")
        }
        let values = try ["devices/clinic-north/massager-01/password", "console/console/broker-password",
                          "console/replica-2/broker-password", "console/tokens/head-office.token"].map {
            try String(contentsOf: fleet.url.appendingPathComponent($0), encoding: .utf8).trimmingCharacters(in: .newlines)
        }
        for value in values {
            #expect(value.count >= 48)
            #expect(!fleet.output.contains(value))
        }
        let keys = try ["ca/ca.key", "devices/clinic-north/massager-01/device.key"].map {
            try String(contentsOf: fleet.url.appendingPathComponent($0), encoding: .utf8)
        }
        for key in keys {
            let body = key.split(separator: "\n").dropFirst().first.map(String.init) ?? key
            #expect(!fleet.output.contains(body))
        }
        // Only hashes in the broker's password file.
        let passwd = try String(contentsOf: fleet.brokerDirectory.appendingPathComponent("passwd"), encoding: .utf8)
        for value in values {
            #expect(!passwd.contains(value))
        }
        #expect(passwd.split(separator: "\n").allSatisfy { $0.contains(":$7$") })
    }

    @Test("API tokens: only their SHA-256 goes to the console's tokens file; rotate and remove")
    func tokens() async throws {
        let fleet = try await ProvisionedFleet.create()
        try await fleet.provision(["token", "head-office", "admin"])
        try await fleet.provision(["token", "north-desk", "operator", "clinic-north", "spa-south"])
        let tokensFile = fleet.url.appendingPathComponent("console/tokens.yaml")
        func hash(of name: String) async throws -> String {
            let token = try String(contentsOf: fleet.url.appendingPathComponent("console/tokens/\(name).token"), encoding: .utf8)
                .trimmingCharacters(in: .newlines)
            let digest = try await ProcessRunner.run(
                ExecutableLocator.find("openssl"), arguments: ["dgst", "-sha256", "-r"], standardInput: token)
            return String(digest.standardOutput.prefix(64))
        }
        var text = try String(contentsOf: tokensFile, encoding: .utf8)
        let adminHash = try await hash(of: "head-office")
        #expect(text.contains(#"  - {name: "head-office", sha256: "\#(adminHash)", role: admin}"#))
        let deskHash = try await hash(of: "north-desk")
        #expect(text.contains(
            #"  - {name: "north-desk", sha256: "\#(deskHash)", role: operator, sites: ["clinic-north", "spa-south"]}"#))

        try await fleet.provision(["token", "north-desk", "operator", "clinic-north", "--rotate"])
        text = try String(contentsOf: tokensFile, encoding: .utf8)
        let rotatedHash = try await hash(of: "north-desk")
        #expect(rotatedHash != deskHash)
        #expect(!text.contains(deskHash))
        #expect(text.contains(#"  - {name: "north-desk", sha256: "\#(rotatedHash)", role: operator, sites: ["clinic-north"]}"#))

        try await fleet.provision(["revoke-token", "north-desk"])
        text = try String(contentsOf: tokensFile, encoding: .utf8)
        #expect(!text.contains("north-desk"))
        #expect(text.contains(adminHash))
        #expect(!FileManager.default.fileExists(atPath: fleet.url.appendingPathComponent("console/tokens/north-desk.token").path))
        #expect(try mode(of: tokensFile) == 0o600)

        let unscoped = try await fleet.provision(["token", "desk", "operator"], mustSucceed: false)
        #expect(unscoped.status == .exited(2))
        #expect(unscoped.standardError.contains("needs at least one SITE"))
    }

    @Test("bad input is refused with an error that says what was expected", arguments: [
        (["device", "Clinic-North", "massager-01"], "site \"Clinic-North\" is not an id"),
        (["device", "clinic.north", "massager-01"], "site \"clinic.north\" is not an id"),
        (["device", "clinic-north", "massager.01"], "device \"massager.01\" is not an id"),
        (["device", "_console", "state"], "site \"_console\" is not an id"),
        (["device", "clinic-north"], "device needs SITE and DEVICE"),
        (["device", "clinic-north", "massager-01", "--broker", "no-port"], "expected HOST:PORT"),
        (["revoke", "clinic-north"], "revoke needs SITE and DEVICE"),
        (["token", "desk", "superuser"], "expected admin, operator or viewer"),
        (["frobnicate"], "unknown command \"frobnicate\""),
    ])
    func badInput(arguments: [String], message: String) async throws {
        let fleet = try await ProvisionedFleet.create()
        let result = try await fleet.provision(arguments + ["--no-reload"], mustSucceed: false)
        #expect(result.status == .exited(2))
        #expect(result.standardError.contains(message), "\(result)")
    }

    @Test("it refuses to work on a directory that was never initialised, and init needs a broker name")
    func uninitialised() async throws {
        let directory = try TemporaryDirectory(prefix: "not-provisioned")
        let bash = try ExecutableLocator.find("bash")
        let device = try await ProcessRunner.run(
            bash, arguments: [Deploy.provisionScript.path, "--dir", directory.path, "device", "clinic-north", "massager-01"])
        #expect(device.status == .exited(1))
        #expect(device.standardError.contains("is not initialised: run"))
        let initialise = try await ProcessRunner.run(bash, arguments: [Deploy.provisionScript.path, "--dir", directory.path, "init"])
        #expect(initialise.status == .exited(2))
        #expect(initialise.standardError.contains("init needs at least one --hostname"))
    }
}
