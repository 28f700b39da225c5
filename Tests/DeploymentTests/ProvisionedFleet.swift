import FleetTestSupport
import Foundation
import Mosquitto
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the shipped deployment files are: this file is
/// `Tests/DeploymentTests/ProvisionedFleet.swift` of the repository.
enum Deploy {
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let directory = repository.appendingPathComponent("deploy", isDirectory: true)
    static let provisionScript = directory.appendingPathComponent("provision.sh")
    static let mosquittoConfig = directory.appendingPathComponent("mosquitto/mosquitto.conf")
    static let systemdDirectory = directory.appendingPathComponent("systemd", isDirectory: true)
    static let programs = repository.appendingPathComponent("Config/programs", isDirectory: true)
    /// The topic root of a fleet initialised with the defaults.
    static let root = "massage/v1"
    /// What mosquitto logs when SIGHUP made it reread its files.
    static let reloadMarker = "Reloading config"
}

/// A fleet provisioned by the shipped `deploy/provision.sh` into a fresh
/// temporary directory (`--dir`): fleet CA, broker certificate for
/// `localhost`/`127.0.0.1`, broker password/ACL/CRL files, console
/// credentials. ``startBroker()`` runs the shipped mosquitto.conf against
/// those very files; ``device(_:_:on:)`` and ``revoke(_:_:on:)`` change them
/// while the broker runs and wait until it reloaded.
final class ProvisionedFleet: Sendable {
    let directory: TemporaryDirectory
    /// Every provision.sh run's stdout and stderr, to check no secret leaks.
    private let transcript = LockedBox<[String]>([])

    var url: URL { directory.url }
    var brokerDirectory: URL { url.appendingPathComponent("broker", isDirectory: true) }
    var caDirectory: URL { url.appendingPathComponent("ca", isDirectory: true) }
    var consoleDirectory: URL { url.appendingPathComponent("console/console", isDirectory: true) }

    /// Everything provision.sh printed so far (stdout and stderr of all runs).
    var output: String { transcript.mutex.withLock { $0.joined(separator: "\n") } }

    private init(directory: TemporaryDirectory) {
        self.directory = directory
    }

    /// `provision.sh init --hostname localhost --ip 127.0.0.1` into a new directory.
    static func create(_ name: String = "fleet") async throws -> ProvisionedFleet {
        let fleet = try ProvisionedFleet(directory: TemporaryDirectory(prefix: "provisioned-\(name)"))
        try await fleet.provision(["init", "--hostname", "localhost", "--ip", "127.0.0.1", "--no-reload"])
        return fleet
    }

    /// Runs `provision.sh --dir DIR arguments…` and returns how it went;
    /// throws when it failed and `mustSucceed`.
    @discardableResult
    func provision(_ arguments: [String], environment: [String: String] = [:], mustSucceed: Bool = true) async throws -> ProcessRunner.Completed {
        let bash = try ExecutableLocator.find("bash")
        let result = try await ProcessRunner.run(
            bash, arguments: [Deploy.provisionScript.path, "--dir", url.path] + arguments, environment: environment, timeout: .seconds(60))
        transcript.mutex.withLock { $0.append(result.standardOutput + result.standardError) }
        if mustSucceed && !result.succeeded {
            throw FixtureError("provision.sh \(arguments.joined(separator: " ")) failed: \(result)")
        }
        return result
    }

    // MARK: The broker

    /// mosquitto running deploy/mosquitto/mosquitto.conf, with only its
    /// listener moved to a free loopback port and its paths to this fleet's
    /// directory and the fixture's.
    func startBroker() async throws -> MosquittoBroker {
        try await MosquittoBroker.start(BrokerOptions(
            configTemplate: Deploy.mosquittoConfig,
            templateReplacements: [
                ("/etc/massagefleet/broker/", brokerDirectory.path + "/"),
                ("listener 8883", "listener {{TLS_PORT}} 127.0.0.1"),
                ("pid_file /run/mosquitto/mosquitto.pid", "pid_file {{DIR}}/mosquitto.pid"),
                ("persistence_location /var/lib/mosquitto/", "persistence_location {{PERSISTENCE_DIR}}"),
            ]))
    }

    /// The options that make provision.sh reload this broker (its pid file).
    func reloadOptions(_ broker: MosquittoBroker) -> [String] {
        ["--pid-file", broker.directory.appendingPathComponent("mosquitto.pid").path]
    }

    /// Runs provision.sh with `arguments` plus the reload options and waits
    /// until the broker logged that it reloaded.
    @discardableResult
    func provisionAndWaitForReload(_ arguments: [String], on broker: MosquittoBroker) async throws -> ProcessRunner.Completed {
        let before = broker.log().components(separatedBy: Deploy.reloadMarker).count
        let result = try await provision(arguments + reloadOptions(broker))
        try await waitUntil(timeout: .seconds(10), "the broker to reload after provision.sh \(arguments[0])") {
            broker.log().components(separatedBy: Deploy.reloadMarker).count > before
        }
        return result
    }

    // MARK: Devices and the console

    /// `provision.sh device SITE DEVICE --broker localhost:<TLS port>` while
    /// `broker` runs; returns the bundle once the broker reloaded.
    @discardableResult
    func device(
        _ site: String, _ device: String, on broker: MosquittoBroker, extra: [String] = []
    ) async throws -> DeviceBundle {
        let port = try #require(broker.tlsPort)
        try await provisionAndWaitForReload(["device", site, device, "--broker", "localhost:\(port)"] + extra, on: broker)
        return try bundle(site, device)
    }

    /// The bundle provision.sh wrote for a device.
    func bundle(_ site: String, _ device: String) throws -> DeviceBundle {
        let directory = url.appendingPathComponent("devices/\(site)/\(device)", isDirectory: true)
        return try DeviceBundle(site: site, device: device, directory: directory)
    }

    /// `provision.sh revoke SITE DEVICE` while `broker` runs.
    @discardableResult
    func revoke(_ site: String, _ device: String, on broker: MosquittoBroker) async throws -> ProcessRunner.Completed {
        try await provisionAndWaitForReload(["revoke", site, device], on: broker)
    }

    /// The console's broker settings (console/console/broker.yaml) with the
    /// test broker's port (init wrote the production address, port 8883).
    func consoleSettings(_ broker: MosquittoBroker) throws -> BrokerSettingsFile {
        var settings = try BrokerSettingsFile(consoleDirectory.appendingPathComponent("broker.yaml"))
        settings.port = try #require(broker.tlsPort)
        return settings
    }

    /// A connected console-user client subscribed to `{root}/#`, and what it receives.
    func consoleSubscriber(_ broker: MosquittoBroker) async throws -> (MQTTClient, MessageCollector) {
        let client = try await connectedClient(try consoleSettings(broker), name: "console-watch")
        let inbox = MessageCollector(client)
        try await client.subscribe("\(Deploy.root)/#", qos: .atLeastOnce)
        return (client, inbox)
    }
}

/// What provision.sh writes for one massager: `agent.yaml`, `password`,
/// `ca.crt`, `device.crt`, `device.key`.
struct DeviceBundle: Sendable {
    let site: String
    let device: String
    let directory: URL
    let settings: BrokerSettingsFile

    init(site: String, device: String, directory: URL) throws {
        self.site = site
        self.device = device
        self.directory = directory
        settings = try BrokerSettingsFile(directory.appendingPathComponent("agent.yaml"))
    }

    var agentConfig: URL { directory.appendingPathComponent("agent.yaml") }
    var identity: String { "\(site).\(device)" }
    func topic(_ kind: String) -> String { "\(Deploy.root)/\(site)/\(device)/\(kind)" }
    /// This device's reply topic of a console instance (the Response Topic
    /// that console gives it; the only reply topic the ACL lets it write).
    func replyTopic(instance: String = "console") -> String { "\(Deploy.root)/_console/reply/\(instance)/\(site)/\(device)" }

    /// The bundle copied to `directory` as an installer would copy it to
    /// the massager's /etc/massage-agent (relative paths keep working).
    /// What provision.sh later does to its own copy (revoke deletes it,
    /// rotate replaces it) does not touch this one: it is what stays on the
    /// device, or in a thief's hands.
    func installed(into directory: TemporaryDirectory) throws -> DeviceBundle {
        let target = directory.file("etc-massage-agent-\(identity)")
        try FileManager.default.copyItem(at: self.directory, to: target)
        return try DeviceBundle(site: site, device: device, directory: target)
    }

}

/// The `broker:` section of a YAML file provision.sh generated (agent.yaml,
/// or the console's broker.yaml), read with the same rules as the programs:
/// relative paths resolve against the file's directory, the password comes
/// from `password_file`. Also the top-level scalar keys (site, device, …).
struct BrokerSettingsFile: Sendable {
    var values: [String: String]
    var host: String
    var port: Int
    var username: String
    var password: String
    var caFile: URL
    var certificateFile: URL?
    var keyFile: URL?
    var verifyHostname: Bool

    init(_ file: URL) throws {
        let values = BrokerSettingsFile.flatten(try String(contentsOf: file, encoding: .utf8))
        self.values = values
        let base = file.deletingLastPathComponent()
        func value(_ key: String) throws -> String {
            guard let value = values[key] else { throw FixtureError("\(file.path) has no \(key)") }
            return value
        }
        func path(_ key: String) throws -> URL {
            let raw = try value(key)
            return raw.hasPrefix("/") ? URL(fileURLWithPath: raw) : base.appendingPathComponent(raw)
        }
        host = try value("broker.host")
        guard let port = Int(try value("broker.port")) else { throw FixtureError("\(file.path): broker.port is not a number") }
        self.port = port
        username = try value("broker.username")
        password = try String(contentsOf: try path("broker.password_file"), encoding: .utf8)
            .trimmingCharacters(in: .newlines)
        caFile = try path("broker.tls.ca_file")
        certificateFile = values["broker.tls.cert_file"] == nil ? nil : try path("broker.tls.cert_file")
        keyFile = values["broker.tls.key_file"] == nil ? nil : try path("broker.tls.key_file")
        verifyHostname = values["broker.tls.verify_hostname"] != "false"
    }

    /// `key: value` lines of a block-style YAML file as dotted keys
    /// (`broker.tls.ca_file`); quotes removed, comments skipped. Enough for
    /// the files provision.sh writes, nothing more.
    static func flatten(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        var path: [(indent: Int, key: String)] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let indent = line.prefix(while: { $0 == " " }).count
            let content = line.dropFirst(indent)
            guard !content.hasPrefix("#"), let colon = content.firstIndex(of: ":") else { continue }
            let key = String(content[..<colon])
            var value = content[content.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            while let last = path.last, last.indent >= indent { path.removeLast() }
            if value.isEmpty {
                path.append((indent, key))
                continue
            }
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                value = String(value.dropFirst().dropLast())
            }
            result[(path.map(\.key) + [key]).joined(separator: ".")] = value
        }
        return result
    }

    /// A client configuration that uses exactly these settings.
    func configuration(clientID: String) -> MQTTConfiguration {
        var configuration = MQTTConfiguration(host: host, port: port, clientID: clientID)
        configuration.username = username
        configuration.password = password
        configuration.tls = TLSConfiguration(
            caFile: caFile.path, certificateFile: certificateFile?.path, keyFile: keyFile?.path,
            verifyHostname: verifyHostname)
        // Generous: under the rest of the suite's load a 5 s keepalive once let
        // the broker drop a client mid-test (connection_lost where the test
        // expected not_authorized); nothing here measures keepalive.
        configuration.keepAliveSeconds = 30
        configuration.connectTimeout = .seconds(15)
        configuration.reconnect = ReconnectPolicy(initialDelay: .milliseconds(50), maximumDelay: .milliseconds(500))
        return configuration
    }
}

/// A client for `settings` (changed by `configure`), connected.
func connectedClient(
    _ settings: BrokerSettingsFile, name: String, configure: (inout MQTTConfiguration) -> Void = { _ in }
) async throws -> MQTTClient {
    let client = try unconnectedClient(settings, name: name, configure: configure)
    try await client.connect()
    return client
}

/// A client for `settings` (changed by `configure`), not connected yet.
func unconnectedClient(
    _ settings: BrokerSettingsFile, name: String, configure: (inout MQTTConfiguration) -> Void = { _ in }
) throws -> MQTTClient {
    var configuration = settings.configuration(clientID: "\(name)-\(UUID().uuidString.prefix(8))")
    configure(&configuration)
    return try MQTTClient(configuration: configuration)
}

/// Connecting with `configure`d settings fails; returns the error.
func refusedConnection(
    _ settings: BrokerSettingsFile, name: String, configure: (inout MQTTConfiguration) -> Void = { _ in }
) async throws -> MQTTError? {
    let client = try unconnectedClient(settings, name: name) { configuration in
        configuration.reconnect = ReconnectPolicy(enabled: false)
        configure(&configuration)
    }
    var refusal: MQTTError?
    do {
        try await client.connect()
    } catch {
        refusal = error as? MQTTError ?? MQTTError(.system, "\(error)")
    }
    await client.shutdown()
    return refusal
}

/// Runs `attempt` (a connection with a certificate the broker must refuse)
/// and checks that it failed and that the broker logged why: it could not
/// verify the certificate (unknown CA, revoked). The client's error code
/// depends on timing: with TLS 1.3 the client finishes its side of the
/// handshake before the broker has checked the certificate, so it sees
/// either the TLS alert (`tls`) or the reset connection (`connectionRefused`).
func expectCertificateRefused(
    by broker: MosquittoBroker, _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
    _ attempt: () async throws -> MQTTError?
) async throws {
    let marker = "certificate verify failed"
    let before = broker.log().components(separatedBy: marker).count
    let error = try await attempt()
    #expect(error != nil, "\(what) was accepted", sourceLocation: sourceLocation)
    if let error {
        #expect([.tls, .connectionRefused, .connectionLost].contains(error.code), "\(what): \(error)", sourceLocation: sourceLocation)
    }
    try await waitUntil(timeout: .seconds(5), "the broker to log that it refused the certificate (\(what))") {
        broker.log().components(separatedBy: marker).count > before
    }
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// The permission bits of a file (`0o600`).
func mode(of url: URL) throws -> Int {
    var info = stat()
    guard stat(url.path, &info) == 0 else {
        throw FixtureError("cannot stat \(url.path): \(String(cString: strerror(errno)))")
    }
    return Int(info.st_mode & 0o777)
}
