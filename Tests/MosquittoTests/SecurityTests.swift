import FleetTestSupport
import Mosquitto
import Testing

@Suite("MQTT client credentials and TLS", .timeLimit(.minutes(3)), .tags(.e2e))
struct SecurityTests {
    @Test("a wrong password is refused with an error that says what to check")
    func wrongPassword() async throws {
        let broker = try await MosquittoBroker.start(BrokerOptions(users: ["device-1": "right-password"]))
        defer { broker.stopNow() }
        let ok = try await makeClient(broker, "good") {
            $0.username = "device-1"
            $0.password = "right-password"
        }
        #expect(ok.isConnected)
        await ok.shutdown()

        let bad = try await makeClient(broker, "bad", connect: false) {
            $0.clientID = "device-1-bad"
            $0.username = "device-1"
            $0.password = "wrong"
        }
        let error = await #expect(throws: MQTTError.self) { try await bad.connect() }
        #expect(error?.code == .notAuthorized)
        #expect(error?.message.contains("not authorised: check username/password for client 'device-1-bad'") == true)
        #expect(bad.connectionState != .idle && !bad.isConnected)
        await bad.shutdown()

        let anonymous = try await makeClient(broker, "anon", connect: false)
        let anonError = await #expect(throws: MQTTError.self) { try await anonymous.connect() }
        #expect(anonError?.code == .notAuthorized)
        await anonymous.shutdown()
    }

    @Test("a publish the ACL denies is refused as not authorised and never reaches a subscriber")
    func aclDenied() async throws {
        let broker = try await MosquittoBroker.start(BrokerOptions(
            users: ["dev": "pw", "watch": "pw"],
            acl: """
            user dev
            topic readwrite mine/#

            user watch
            topic read #
            """))
        defer { broker.stopNow() }
        let client = try await makeClient(broker, "acl") {
            $0.username = "dev"
            $0.password = "pw"
        }
        let watcher = try await makeClient(broker, "watch") {
            $0.username = "watch"
            $0.password = "pw"
        }
        let inbox = MessageCollector(watcher)
        try await watcher.subscribe("#", qos: .atLeastOnce)
        // mosquitto answers a denied QoS 1 publish with reason 0x87.
        let denied = await #expect(throws: MQTTError.self) {
            try await client.publish("theirs/x", payload: bytes("no"), qos: .atLeastOnce)
        }
        #expect(denied?.code == .notAuthorized)
        _ = try await client.publish("mine/ok", payload: bytes("ok"), qos: .atLeastOnce)
        let got = try await inbox.waitFor(1, on: "mine/ok")
        #expect(text(got[0].payload) == "ok")
        #expect(inbox.messages(on: "theirs/x").isEmpty)
        await client.shutdown()
        await watcher.shutdown()
    }

    @Test("TLS with the generated CA and a client certificate connects and round-trips")
    func tlsConnect() async throws {
        let broker = try await MosquittoBroker.start(BrokerOptions(tls: true))
        defer { broker.stopNow() }
        let client = try await tlsClient(broker, "tls")
        let inbox = MessageCollector(client)
        try await client.subscribe("tls/echo", qos: .exactlyOnce)
        try await client.publish("tls/echo", payload: bytes("secret"), qos: .exactlyOnce)
        #expect(text(try await inbox.waitFor(1)[0].payload) == "secret")
        await client.shutdown()
    }

    /// libmosquitto writes a packet on the calling thread unless told the
    /// application runs its own threads (`mosquitto_threaded_set`). Over TLS
    /// that put `SSL_write` on a caller's thread beside the loop thread's
    /// `SSL_read` on the same `SSL` object, which OpenSSL does not allow: the
    /// connection dropped now and then (a CI run lost a TLS test's
    /// connection that way). Here one client publishes from several tasks
    /// while another floods it, so reads and writes overlap all the time.
    @Test("TLS with publishes from many tasks while the client is reading: the connection holds and nothing is lost")
    func tlsConcurrentReadWrite() async throws {
        let broker = try await MosquittoBroker.start(BrokerOptions(tls: true))
        defer { broker.stopNow() }
        let reader = try await tlsClient(broker, "tls-both")
        let flooder = try await tlsClient(broker, "tls-flood")
        let lost = LockedBox(0)
        let watch = Task {
            for await state in reader.connectionStates {
                if case .disconnected = state { lost.mutex.withLock { $0 += 1 } }
            }
        }
        defer { watch.cancel() }
        let inbox = MessageCollector(reader)
        try await reader.subscribe("tls/in", qos: .atLeastOnce)
        try await reader.subscribe("tls/own", qos: .atLeastOnce)
        let payload = [UInt8](repeating: 0x5A, count: 1500)
        let (tasks, perTask, flood) = (4, 300, 1200)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for _ in 0..<flood { try await flooder.publish("tls/in", payload: payload, qos: .atLeastOnce) }
            }
            for _ in 0..<tasks {
                group.addTask {
                    for _ in 0..<perTask { try await reader.publish("tls/own", payload: payload, qos: .atLeastOnce) }
                }
            }
            try await group.waitForAll()
        }
        try await inbox.waitFor(flood, on: "tls/in", timeout: .seconds(60))
        try await inbox.waitFor(tasks * perTask, on: "tls/own", timeout: .seconds(60))
        #expect(inbox.messages(on: "tls/in").count == flood)
        #expect(inbox.messages(on: "tls/own").count == tasks * perTask)
        #expect(lost.mutex.withLock { $0 } == 0, "the reader's TLS connection dropped")
        #expect(reader.isConnected && flooder.isConnected)
        let brokerLog = broker.log()
        #expect(!brokerLog.contains("OpenSSL Error"), "the broker saw a TLS error")
        #expect(!brokerLog.contains("Socket error on client"), "the broker saw a connection fail")
        await reader.shutdown()
        await flooder.shutdown()
    }

    @Test("a broker certificate from an unknown CA is refused with a TLS error")
    func unknownCA() async throws {
        let broker = try await MosquittoBroker.start(BrokerOptions(tls: true))
        defer { broker.stopNow() }
        let certs = try #require(broker.certificates)
        let tlsPort = try #require(broker.tlsPort)
        let client = try await makeClient(broker, "wrong-ca", connect: false) {
            $0.port = tlsPort
            $0.host = "localhost"
            $0.tls = TLSConfiguration(caFile: certs.otherCACertificate.path)
        }
        let error = await #expect(throws: MQTTError.self) { try await client.connect() }
        #expect(error?.code == .tls)
        #expect(error?.message.contains("CA file") == true)
        await client.shutdown()
    }

    @Test("plain MQTT against the TLS port fails instead of hanging")
    func plainToTLSPort() async throws {
        let broker = try await MosquittoBroker.start(BrokerOptions(tls: true))
        defer { broker.stopNow() }
        let tlsPort = try #require(broker.tlsPort)
        let client = try await makeClient(broker, "plain", connect: false) {
            $0.port = tlsPort
            $0.connectTimeout = .seconds(3)
        }
        await #expect(throws: MQTTError.self) { try await client.connect() }
        await client.shutdown()
    }

    @Test("a missing CA file is a configuration error naming the file")
    func missingCAFile() throws {
        let error = #expect(throws: MQTTError.self) {
            _ = try MQTTClient(configuration: MQTTConfiguration(clientID: "x", tls: TLSConfiguration(caFile: "/nonexistent/ca.pem")))
        }
        #expect(error?.code == .tls)
        #expect(error?.message.contains("/nonexistent/ca.pem") == true)
    }
}

/// A client connected over TLS to `broker`'s TLS port, with the generated
/// CA and client certificate.
private func tlsClient(_ broker: MosquittoBroker, _ name: String) async throws -> MQTTClient {
    let certs = try #require(broker.certificates)
    let tlsPort = try #require(broker.tlsPort)
    return try await makeClient(broker, name) {
        $0.port = tlsPort
        $0.host = "localhost"
        $0.tls = TLSConfiguration(caFile: certs.caCertificate.path, certificateFile: certs.clientCertificate.path, keyFile: certs.clientKey.path)
    }
}
