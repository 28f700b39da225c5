import FleetTestSupport
import Foundation
import Testing

/// The properties of deploy/mosquitto/mosquitto.conf that the behaviour
/// tests cannot see from outside (they run it with one substituted
/// listener, so "there is no other listener" is checked here).
@Suite("shipped broker config file", .tags(.e2e))
struct ShippedBrokerConfigTests {
    /// Directive lines (no comments, no blank lines).
    func directives() throws -> [String] {
        try String(contentsOf: Deploy.mosquittoConfig, encoding: .utf8)
            .split(separator: "\n")
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
    }

    @Test("one listener, TLS 1.2 or later with client certificates from the fleet CA, no anonymous access")
    func oneTLSListener() throws {
        let lines = try directives()
        let listeners = lines.filter { $0.hasPrefix("listener ") }
        #expect(listeners == ["listener 8883"])
        for required in [
            "per_listener_settings false", "allow_anonymous false",
            "password_file /etc/massagefleet/broker/passwd", "acl_file /etc/massagefleet/broker/acl",
            "cafile /etc/massagefleet/broker/ca.crt", "certfile /etc/massagefleet/broker/server.crt",
            "keyfile /etc/massagefleet/broker/server.key", "crlfile /etc/massagefleet/broker/crl.pem",
            "tls_version tlsv1.2", "require_certificate true", "use_identity_as_username false",
            "use_username_as_clientid true",
        ] {
            #expect(lines.contains(required), "missing: \(required)")
        }
        // The TLS settings belong to the listener: they come after it.
        let listenerIndex = try #require(lines.firstIndex(of: "listener 8883"))
        for listenerSetting in ["certfile", "keyfile", "cafile", "crlfile", "tls_version", "require_certificate", "use_username_as_clientid"] {
            let index = try #require(lines.firstIndex { $0.hasPrefix(listenerSetting + " ") })
            #expect(index > listenerIndex, "\(listenerSetting) must follow the listener line")
        }
        #expect(!lines.contains { $0.hasPrefix("allow_anonymous true") || $0.hasPrefix("psk_") || $0.hasPrefix("plugin ") })
        #expect(!lines.contains { $0.hasPrefix("include_dir") }, "nothing outside this file may add a listener")
    }

    @Test("the broker validates it (mosquitto starts with it, files from provision.sh)")
    func mosquittoAcceptsIt() async throws {
        let fleet = try await ProvisionedFleet.create()
        let broker = try await fleet.startBroker()
        defer { broker.stopNow() }
        #expect(broker.isRunning)
        let complaints = broker.log().split(separator: "\n").filter {
            ($0.contains("Error") || $0.contains("Warning")) && !$0.contains("should not be run as root")
                // The fixture's readiness probe opens and closes a bare TCP connection to the TLS port.
                && !$0.contains("unexpected eof while reading")
        }
        #expect(complaints.isEmpty, "\(complaints)")
    }
}
