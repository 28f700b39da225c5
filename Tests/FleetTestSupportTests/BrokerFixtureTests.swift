import FleetTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

// Scratch tests for the FleetTestSupport fixtures, driven only by the
// mosquitto command-line clients (no dependency on the Mosquitto module).

/// `mosquitto_pub` against the broker's plain port, QoS 1.
private func publish(
    _ broker: MosquittoBroker, topic: String, message: String, _ extra: [String] = []
) async throws -> ProcessRunner.Completed {
    try await ProcessRunner.run(
        tool: "mosquitto_pub",
        arguments: ["-h", broker.host, "-p", String(broker.port), "-q", "1", "-t", topic, "-m", message] + extra,
        timeout: .seconds(10))
}

/// `mosquitto_pub` against the TLS port.
private func publishTLS(
    _ broker: MosquittoBroker, caFile: URL, _ extra: [String] = []
) async throws -> ProcessRunner.Completed {
    try await ProcessRunner.run(
        tool: "mosquitto_pub",
        arguments: [
            "-h", broker.host, "-p", String(try #require(broker.tlsPort)), "--cafile", caFile.path,
            "-q", "1", "-t", "tls/check", "-m", "hello",
        ] + extra,
        timeout: .seconds(10))
}

/// A `mosquitto_sub` that is subscribed (its SUBACK arrived) when this returns.
private func subscriber(
    _ broker: MosquittoBroker, topic: String, count: Int = 1, _ extra: [String] = []
) async throws -> ProcessRunner {
    let sub = try ProcessRunner.start(
        tool: "mosquitto_sub",
        arguments: ["-h", broker.host, "-p", String(broker.port), "-q", "1", "-t", topic, "-C", String(count), "-d"] + extra)
    try await sub.waitForOutput("SUBACK", timeout: .seconds(5))
    return sub
}

/// Whether `pid` is gone (or a zombie nobody reaped yet).
private func isDead(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
    guard let close = stat.lastIndex(of: ")") else { return true }
    let state = stat[stat.index(close, offsetBy: 2)]
    return state == "Z" || state == "X"
}

@Suite("mosquitto broker fixture", .tags(.e2e))
struct BrokerFixtureTests {
    @Test("a started broker round-trips a message between mosquitto_pub and mosquitto_sub")
    func roundTrip() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        #expect(broker.isRunning)
        #expect(broker.host == "127.0.0.1")
        #expect(acceptsTCPConnections(port: broker.port))
        #expect(broker.tlsPort == nil && broker.certificates == nil)

        let sub = try await subscriber(broker, topic: "fleet/round-trip")
        let pub = try await publish(broker, topic: "fleet/round-trip", message: "calf 3")
        #expect(pub.succeeded, "\(pub)")
        #expect(try await sub.waitForExit(timeout: .seconds(5)) == .exited(0))
        #expect(sub.standardOutput().contains("calf 3"))
        #expect(broker.log().contains("mosquitto version"))
    }

    @Test("stop and restart keep the same port; the port is closed while stopped")
    func stopAndRestart() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        let port = broker.port
        let firstPID = try #require(broker.processIdentifier)

        try await broker.stop()
        #expect(!broker.isRunning)
        #expect(!acceptsTCPConnections(port: port))
        // SIGTERM reached it (no escalation to SIGKILL): mosquitto said goodbye.
        #expect(broker.log().contains("mosquitto version 2.0.11 terminating"))
        try await broker.stop()  // idempotent

        try await broker.restart()
        #expect(broker.isRunning)
        #expect(broker.port == port)
        #expect(broker.processIdentifier != firstPID)
        #expect(try await publish(broker, topic: "after/restart", message: "x").succeeded)

        // restart() while running stops first.
        try await broker.restart()
        #expect(try await publish(broker, topic: "after/second", message: "y").succeeded)
        #expect(broker.log().components(separatedBy: "mosquitto version 2").count >= 4)
    }

    @Test("kill is an outage: the broker is gone at once and comes back on restart")
    func killAndRestart() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        let pid = try #require(broker.processIdentifier)
        try broker.kill()
        #expect(!broker.isRunning)
        #expect(isDead(pid))
        #expect(!acceptsTCPConnections(port: broker.port))
        let failed = try await publish(broker, topic: "down", message: "x")
        #expect(!failed.succeeded)

        try await broker.restart()
        #expect(try await publish(broker, topic: "up", message: "x").succeeded)
    }

    @Test("restart retries while its port is briefly taken")
    func restartWaitsForPort() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        try broker.kill()

        // Hold the port with a listening socket of our own.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(broker.port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(bound == 0)
        #expect(listen(fd, 1) == 0)

        let restart = Task { try await broker.restart() }
        try await waitUntil(timeout: .seconds(5), "a restart attempt to hit the taken port") {
            broker.log().components(separatedBy: "Address already in use").count > 1
        }
        close(fd)
        try await restart.value
        #expect(broker.isRunning)
        #expect(try await publish(broker, topic: "back", message: "x").succeeded)
    }

    @Test("persistence keeps a retained message across stop and restart")
    func persistence() async throws {
        let broker = try await MosquittoBroker.start(.init(persistence: true))
        defer { broker.stopNow() }
        #expect(try await publish(broker, topic: "kept/config", message: "v7", ["-r"]).succeeded)
        try await broker.stop()
        try await broker.restart()
        let read = try await ProcessRunner.run(
            tool: "mosquitto_sub",
            arguments: ["-h", broker.host, "-p", String(broker.port), "-t", "kept/config", "-C", "1", "-W", "5"])
        #expect(read.succeeded, "\(read)")
        #expect(read.standardOutput == "v7\n")
    }

    @Test("a password file refuses a wrong password and anonymous clients")
    func passwords() async throws {
        let broker = try await MosquittoBroker.start(.init(users: ["device-1": "right", "console": "c0ns0le"]))
        defer { broker.stopNow() }
        #expect(try String(contentsOf: try #require(broker.passwordFile), encoding: .utf8).contains("device-1:$7$"))
        #expect(try await publish(broker, topic: "t", message: "x", ["-u", "device-1", "-P", "right"]).succeeded)
        #expect(try await publish(broker, topic: "t", message: "x", ["-u", "console", "-P", "c0ns0le"]).succeeded)
        let wrong = try await publish(broker, topic: "t", message: "x", ["-u", "device-1", "-P", "wrong"])
        #expect(!wrong.succeeded)
        #expect(wrong.standardError.contains("not authorised"))
        #expect(!(try await publish(broker, topic: "t", message: "x")).succeeded)
    }

    @Test("revoking a user and reloading refuses it while the broker keeps running")
    func revokeAndReload() async throws {
        let broker = try await MosquittoBroker.start(.init(users: ["device-1": "pw1", "device-2": "pw2"]))
        defer { broker.stopNow() }
        let pid = broker.processIdentifier
        #expect(try await publish(broker, topic: "t", message: "x", ["-u", "device-2", "-P", "pw2"]).succeeded)
        try await broker.updateUsers(["device-1": "pw1"])
        #expect(!(try await publish(broker, topic: "t", message: "x", ["-u", "device-2", "-P", "pw2"])).succeeded)
        #expect(try await publish(broker, topic: "t", message: "x", ["-u", "device-1", "-P", "pw1"]).succeeded)
        #expect(broker.processIdentifier == pid)
    }

    @Test("the ACL file decides what a user's publishes reach")
    func acl() async throws {
        let broker = try await MosquittoBroker.start(.init(
            users: ["dev": "pw", "admin": "apw"],
            acl: """
                user dev
                topic readwrite mine/#

                user admin
                topic readwrite #
                """))
        defer { broker.stopNow() }
        let watcher = try await subscriber(broker, topic: "#", ["-u", "admin", "-P", "apw", "-v"])
        #expect(try await publish(broker, topic: "theirs/x", message: "forbidden", ["-u", "dev", "-P", "pw"]).succeeded)
        #expect(try await publish(broker, topic: "mine/x", message: "allowed", ["-u", "dev", "-P", "pw"]).succeeded)
        try await watcher.waitForExit(timeout: .seconds(5))
        #expect(watcher.standardOutput().contains("mine/x allowed"))
        #expect(!watcher.standardOutput().contains("forbidden"))
    }

    @Test("the TLS listener accepts the generated CA and refuses another CA")
    func tls() async throws {
        let broker = try await MosquittoBroker.start(.init(tls: true))
        defer { broker.stopNow() }
        let certs = try #require(broker.certificates)
        let tlsPort = try #require(broker.tlsPort)
        #expect(tlsPort != broker.port)
        #expect(broker.log().contains("Opening ipv4 listen socket on port \(tlsPort)"))

        let good = try await publishTLS(broker, caFile: certs.caCertificate)
        #expect(good.succeeded, "\(good)")
        // The hostname check passes for "localhost" too (SAN DNS:localhost).
        let byName = try await ProcessRunner.run(
            tool: "mosquitto_pub",
            arguments: ["-h", "localhost", "-p", String(tlsPort), "--cafile", certs.caCertificate.path, "-t", "x", "-m", "y"])
        #expect(byName.succeeded, "\(byName)")

        let otherCA = try await publishTLS(broker, caFile: certs.otherCACertificate)
        #expect(!otherCA.succeeded)
        #expect(otherCA.standardError.lowercased().contains("tls") || otherCA.standardError.contains("certificate"), "\(otherCA)")
        // The plain listener still works.
        #expect(try await publish(broker, topic: "plain", message: "x").succeeded)
    }

    @Test("with required client certificates only the test CA's clients get in")
    func clientCertificates() async throws {
        let broker = try await MosquittoBroker.start(.init(requireClientCertificate: true, useIdentityAsUsername: true, clientCommonName: "device-7"))
        defer { broker.stopNow() }
        let certs = try #require(broker.certificates)
        #expect(certs.client.commonName == "device-7")

        let withClientCert = try await publishTLS(
            broker, caFile: certs.caCertificate, ["--cert", certs.clientCertificate.path, "--key", certs.clientKey.path])
        #expect(withClientCert.succeeded, "\(withClientCert)")
        try await broker.waitForLog(containing: "u'device-7'")

        let issued = try await certs.issueClientCertificate(commonName: "site-2/device-7")
        let withIssued = try await publishTLS(
            broker, caFile: certs.caCertificate, ["--cert", issued.certificate.path, "--key", issued.privateKey.path])
        #expect(withIssued.succeeded, "\(withIssued)")
        try await broker.waitForLog(containing: "u'site-2/device-7'")

        let fromOtherCA = try await publishTLS(
            broker, caFile: certs.caCertificate,
            ["--cert", certs.otherClientCertificate.path, "--key", certs.otherClientKey.path])
        #expect(!fromOtherCA.succeeded)
        let without = try await publishTLS(broker, caFile: certs.caCertificate)
        #expect(!without.succeeded)
    }

    @Test("a shipped-style config template runs with ports and paths substituted")
    func template() async throws {
        let scratch = try TemporaryDirectory(prefix: "template")
        let shipped = scratch.file("massagefleet.conf")
        try """
            # deploy/mosquitto/massagefleet.conf (shape only)
            per_listener_settings false
            user mosquitto
            log_dest stderr
            allow_anonymous false
            password_file /etc/mosquitto/massagefleet/passwd
            acl_file /etc/mosquitto/massagefleet/acl
            persistence true
            persistence_location /var/lib/mosquitto/

            listener 8883
            cafile /etc/mosquitto/massagefleet/pki/ca.crt
            certfile /etc/mosquitto/massagefleet/pki/server.crt
            keyfile /etc/mosquitto/massagefleet/pki/server.key
            tls_version tlsv1.2

            listener 1883 127.0.0.1
            max_connections {{MAX}}
            """.write(to: shipped, atomically: true, encoding: .utf8)
        let broker = try await MosquittoBroker.start(.init(
            users: ["device-1": "pw"],
            acl: "user device-1\ntopic readwrite fleet/#\n",
            configTemplate: shipped,
            templateReplacements: [
                ("listener 8883", "listener {{TLS_PORT}} {{HOST}}"),
                ("listener 1883 127.0.0.1", "listener {{PORT}} {{HOST}}"),
                ("/etc/mosquitto/massagefleet/passwd", "{{PASSWORD_FILE}}"),
                ("/etc/mosquitto/massagefleet/acl", "{{ACL_FILE}}"),
                ("/etc/mosquitto/massagefleet/pki/ca.crt", "{{CAFILE}}"),
                ("/etc/mosquitto/massagefleet/pki/server.crt", "{{CERTFILE}}"),
                ("/etc/mosquitto/massagefleet/pki/server.key", "{{KEYFILE}}"),
                ("/var/lib/mosquitto/", "{{PERSISTENCE_DIR}}"),
            ],
            substitutions: ["MAX": "100"]))
        defer { broker.stopNow() }
        let config = try String(contentsOf: broker.configFile, encoding: .utf8)
        #expect(!config.contains("{{"))
        #expect(config.contains("listener \(try #require(broker.tlsPort)) 127.0.0.1"))
        #expect(config.contains("max_connections 100"))
        #expect(!config.contains("\nuser mosquitto"))
        let certs = try #require(broker.certificates)
        #expect(try await publishTLS(broker, caFile: certs.caCertificate, ["-u", "device-1", "-P", "pw", "-t", "fleet/a"]).succeeded)
        #expect(try await publish(broker, topic: "fleet/b", message: "x", ["-u", "device-1", "-P", "pw"]).succeeded)
        #expect(!(try await publish(broker, topic: "fleet/b", message: "x")).succeeded)
        try broker.kill()
        try await broker.restart()
        #expect(try await publish(broker, topic: "fleet/c", message: "x", ["-u", "device-1", "-P", "pw"]).succeeded)
    }

    @Test("template mistakes fail fast with a message that says what to fix")
    func templateMistakes() async throws {
        let scratch = try TemporaryDirectory(prefix: "template")
        let shipped = scratch.file("bad.conf")
        try "listener {{PORT}}\nallow_anonymous {{ANON}}\n".write(to: shipped, atomically: true, encoding: .utf8)
        let unknown = await #expect(throws: FixtureError.self) {
            _ = try await MosquittoBroker.start(.init(configTemplate: shipped))
        }
        #expect(unknown?.message.contains("{{ANON}}") == true)
        #expect(unknown?.message.contains("BrokerOptions.substitutions") == true)

        let missing = await #expect(throws: FixtureError.self) {
            _ = try await MosquittoBroker.start(.init(
                configTemplate: shipped, templateReplacements: [("listener 8883", "x")]))
        }
        #expect(missing?.message.contains("\"listener 8883\" does not occur") == true)

        let noPasswordFile = await #expect(throws: FixtureError.self) {
            _ = try await MosquittoBroker.start(.init(users: ["a": "b"], configTemplate: shipped, substitutions: ["ANON": "false"]))
        }
        #expect(noPasswordFile?.message.contains("{{PASSWORD_FILE}}") == true)
    }

    @Test("a config mosquitto rejects fails start-up with the broker's own words")
    func badConfig() async throws {
        let error = await #expect(throws: FixtureError.self) {
            _ = try await MosquittoBroker.start(.init(extraConfig: "no_such_option true"))
        }
        #expect(error?.message.contains("exited during start-up") == true)
        #expect(error?.message.contains("no_such_option") == true, "\(String(describing: error))")
    }

    @Test("a broker nobody stops is killed and removed when released")
    func deinitCleansUp() async throws {
        var broker: MosquittoBroker? = try await MosquittoBroker.start()
        let pid = try #require(broker?.processIdentifier)
        let directory = try #require(broker?.directory)
        broker = nil
        try await waitUntil(timeout: .seconds(5), "mosquitto \(pid) to be gone") { isDead(pid) }
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }

    @Test("withMosquittoBroker stops the broker and removes its directory")
    func scoped() async throws {
        let (pid, directory) = try await withMosquittoBroker { broker in
            #expect(try await publish(broker, topic: "s", message: "x").succeeded)
            return (try #require(broker.processIdentifier), broker.directory)
        }
        #expect(isDead(pid))
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }
}

@Suite("test helpers")
struct HelperTests {
    @Test("waitUntil names what it waited for when the deadline passes")
    func waitUntilTimesOut() async throws {
        let clock = ContinuousClock()
        let started = clock.now
        let error = await #expect(throws: TimeoutError.self) {
            try await waitUntil(timeout: .milliseconds(100), "the massager to reach the calf") { false }
        }
        #expect(error?.description.contains("the massager to reach the calf") == true)
        #expect(started.duration(to: clock.now) >= .milliseconds(100))
        var polls = 0
        try await waitUntil(timeout: .seconds(30), pollEvery: .milliseconds(1), "three polls") { // generous deadline: the suite runs beside heavy tests
            polls += 1
            return polls == 3
        }
        #expect(polls == 3)
        let value = try await waitForValue(timeout: .seconds(30), "a value") { polls > 2 ? "ok" : nil }
        #expect(value == "ok")
    }

    @Test("free loopback ports are distinct and unused")
    func ports() throws {
        let ports = try (0..<20).map { _ in try freeLoopbackPort() }
        #expect(Set(ports).count == 20)
        #expect(ports.allSatisfy { $0 > 0 && !acceptsTCPConnections(port: $0) })
    }

    @Test("a temporary directory is private and removed")
    func temporaryDirectory() throws {
        var directory: TemporaryDirectory? = try TemporaryDirectory(prefix: "helper test")
        let url = try #require(directory?.url)
        let attributes = try FileManager.default.attributesOfItem(atPath: url.path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o700)
        try "x".write(to: url.appendingPathComponent("f"), atomically: true, encoding: .utf8)
        directory = nil
        #expect(!FileManager.default.fileExists(atPath: url.path))
    }

    @Test("waiting for output that never comes fails fast once the process exits")
    func outputNeverComes() async throws {
        let runner = try ProcessRunner.start(tool: "mosquitto_pub", arguments: ["--help"])
        let error = await #expect(throws: FixtureError.self) {
            try await runner.waitForOutput("never printed", timeout: .seconds(10))
        }
        #expect(error?.message.contains("exited") == true)
    }

    @Test("a process that outlives its deadline gives a timeout naming it")
    func processTimeout() async throws {
        let error = await #expect(throws: TimeoutError.self) {
            _ = try await ProcessRunner.run(URL(fileURLWithPath: "/bin/sleep"), arguments: ["30"], timeout: .milliseconds(200))
        }
        #expect(error?.description.contains("sleep") == true)
    }
}
