import FleetTestSupport
import Foundation
import Mosquitto
import Testing

/// Who may connect to a broker running the shipped deploy/mosquitto/mosquitto.conf
/// with credentials from deploy/provision.sh.
@Suite("shipped broker config: who may connect", .tags(.e2e))
struct BrokerAuthenticationTests {
    @Test("a provisioned device connects over TLS with exactly the files of its agent.yaml")
    func provisionedDeviceConnects() async throws {
        let fleet = try await ProvisionedFleet.create()
        let broker = try await fleet.startBroker()
        defer { broker.stopNow() }
        let device = try await fleet.device("clinic-north", "massager-01", on: broker)

        #expect(device.settings.host == "localhost")
        #expect(device.settings.port == broker.tlsPort)
        #expect(device.settings.username == "clinic-north.massager-01")
        #expect(device.settings.verifyHostname)
        let client = try await connectedClient(device.settings, name: "device")
        #expect(client.isConnected)
        await client.shutdown()
    }

    @Test("anonymous clients are refused, even with a valid certificate")
    func anonymousRefused() async throws {
        let fleet = try await ProvisionedFleet.create()
        let broker = try await fleet.startBroker()
        defer { broker.stopNow() }
        let device = try await fleet.device("clinic-north", "massager-01", on: broker)

        let error = try await refusedConnection(device.settings, name: "anonymous") {
            $0.username = nil
            $0.password = nil
        }
        #expect(error?.code == .notAuthorized)
    }

    @Test("a wrong password, an unknown user and another device's password are refused")
    func wrongPasswordRefused() async throws {
        let fleet = try await ProvisionedFleet.create()
        let broker = try await fleet.startBroker()
        defer { broker.stopNow() }
        let device = try await fleet.device("clinic-north", "massager-01", on: broker)
        let other = try await fleet.device("clinic-north", "massager-02", on: broker)

        let wrong = try await refusedConnection(device.settings, name: "wrong") { $0.password = "not-the-password" }
        #expect(wrong?.code == .notAuthorized)
        let unknown = try await refusedConnection(device.settings, name: "unknown") { $0.username = "clinic-north.massager-99" }
        #expect(unknown?.code == .notAuthorized)
        let swapped = try await refusedConnection(device.settings, name: "swapped") { $0.password = other.settings.password }
        #expect(swapped?.code == .notAuthorized)
    }

    @Test("plain MQTT on the TLS port fails; there is no plain listener")
    func plainTCPRefused() async throws {
        let fleet = try await ProvisionedFleet.create()
        let broker = try await fleet.startBroker()
        defer { broker.stopNow() }
        let device = try await fleet.device("clinic-north", "massager-01", on: broker)

        let error = try await refusedConnection(device.settings, name: "plain") {
            $0.tls = nil
            $0.connectTimeout = .seconds(3)
        }
        #expect(error != nil)
        // That the TLS listener is the only one is checked on the shipped
        // file itself (ShippedBrokerConfigTests).
    }

    @Test("a client without a certificate is refused, even with a valid password")
    func missingClientCertificateRefused() async throws {
        let fleet = try await ProvisionedFleet.create()
        let broker = try await fleet.startBroker()
        defer { broker.stopNow() }
        let device = try await fleet.device("clinic-north", "massager-01", on: broker)

        let error = try await refusedConnection(device.settings, name: "no-cert") {
            $0.tls = TLSConfiguration(caFile: device.settings.caFile.path)
        }
        #expect(error != nil)
        #expect(broker.log().contains("peer did not return a certificate"))
    }

    @Test("a certificate from another CA is refused, even with a valid password")
    func otherCARefused() async throws {
        let fleet = try await ProvisionedFleet.create()
        let broker = try await fleet.startBroker()
        defer { broker.stopNow() }
        let device = try await fleet.device("clinic-north", "massager-01", on: broker)
        // Another fleet, with its own CA, and a device of the same name.
        let otherFleet = try await ProvisionedFleet.create("other")
        try await otherFleet.provision(["device", "clinic-north", "massager-01", "--no-reload"])
        let foreign = try otherFleet.bundle("clinic-north", "massager-01")

        try await expectCertificateRefused(by: broker, "a certificate of another fleet's CA") {
            try await refusedConnection(device.settings, name: "foreign") {
                $0.tls = TLSConfiguration(
                    caFile: device.settings.caFile.path, certificateFile: foreign.settings.certificateFile?.path,
                    keyFile: foreign.settings.keyFile?.path)
            }
        }
    }

    @Test("the device refuses a broker whose certificate another CA signed")
    func deviceVerifiesBroker() async throws {
        let fleet = try await ProvisionedFleet.create()
        let broker = try await fleet.startBroker()
        defer { broker.stopNow() }
        let device = try await fleet.device("clinic-north", "massager-01", on: broker)
        let otherFleet = try await ProvisionedFleet.create("other")

        let error = try await refusedConnection(device.settings, name: "impostor-check") {
            $0.tls?.caFile = otherFleet.caDirectory.appendingPathComponent("ca.crt").path
        }
        #expect(error?.code == .tls)
    }

    @Test("TLS 1.1 is refused and TLS 1.2 accepted by the listener")
    func tlsVersionFloor() async throws {
        let fleet = try await ProvisionedFleet.create()
        let broker = try await fleet.startBroker()
        defer { broker.stopNow() }
        let device = try await fleet.device("clinic-north", "massager-01", on: broker)
        let port = try #require(broker.tlsPort)

        func handshake(_ version: String) async throws -> ProcessRunner.Completed {
            try await ProcessRunner.run(
                ExecutableLocator.find("openssl"),
                arguments: [
                    "s_client", "-connect", "127.0.0.1:\(port)", version, "-cipher", "DEFAULT@SECLEVEL=0",
                    "-CAfile", device.settings.caFile.path,
                    "-cert", device.settings.certificateFile!.path, "-key", device.settings.keyFile!.path,
                    "-verify_return_error", "-brief",
                ],
                standardInput: "", timeout: .seconds(15))
        }
        let old = try await handshake("-tls1_1")
        #expect(!old.succeeded, "TLS 1.1 handshake: \(old)")
        let current = try await handshake("-tls1_2")
        #expect(current.succeeded, "TLS 1.2 handshake: \(current)")
        #expect(current.standardError.contains("TLSv1.2"))
    }
}
