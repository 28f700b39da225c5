import FleetTestSupport
import Mosquitto
import Testing

@Suite("MQTT client under faults", .timeLimit(.minutes(3)), .tags(.e2e))
struct ResilienceTests {
    @Test("the will is published when a client dies without DISCONNECT, and not after a clean shutdown")
    func will() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        let watcher = try await makeClient(broker, "watcher")
        let inbox = MessageCollector(watcher)
        try await watcher.subscribe("presence/#", qos: .atLeastOnce)

        let will = Will(topic: "presence/dying", payload: bytes(#"{"state":"offline"}"#), qos: .atLeastOnce, retain: true,
                        properties: MQTTProperties(contentType: "application/json"))
        let dying = try await makeClient(broker, "dying") { $0.will = will }
        await dying.closeAbruptly()
        let message = try #require(try await inbox.waitFor(1, on: "presence/dying").first)
        #expect(text(message.payload) == #"{"state":"offline"}"#)
        #expect(message.properties.contentType == "application/json")

        let polite = try await makeClient(broker, "polite") {
            $0.will = Will(topic: "presence/polite", payload: bytes("gone"), qos: .atLeastOnce, retain: false)
        }
        await polite.shutdown()
        // A marker published after the shutdown arrives; the will never does.
        try await watcher.publish("presence/marker", payload: bytes("m"), qos: .atLeastOnce)
        try await inbox.waitFor(1, on: "presence/marker")
        #expect(inbox.messages(on: "presence/polite").isEmpty)
        await watcher.shutdown()
    }

    @Test("after a broker restart the client reconnects with backoff and resubscribes")
    func reconnectAndResubscribe() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        let client = try await makeClient(broker, "survivor")
        let inbox = MessageCollector(client)
        try await client.subscribe("after/restart", qos: .atLeastOnce)

        // Collect every state change to check the sequence afterwards.
        let states = StateRecorder(client)
        try broker.kill()
        try await waitForState(client, "notices the broker is gone") { !$0.isConnected }
        try await broker.restart()
        try await waitForState(client, timeout: .seconds(15), "reconnects") { $0.isConnected }

        let publisher = try await makeClient(broker, "pub")
        try await waitUntil(timeout: .seconds(30), "the resubscription is active") {
            _ = try? await publisher.publish("after/restart", payload: bytes("hello again"), qos: .atLeastOnce)
            return inbox.count > 0
        }
        #expect(text(inbox.messages[0].payload) == "hello again")
        let seen = states.states
        #expect(seen.contains { if case .disconnected(let error?, let retry?) = $0 { return error.code == .connectionLost && retry >= .zero }; return false })
        #expect(seen.contains { if case .connecting = $0 { return true }; return false })
        await publisher.shutdown()
        await client.shutdown()
    }

    @Test("publishing while disconnected fails fast with a clear error")
    func publishWhileDisconnected() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        let client = try await makeClient(broker, "offline") {
            $0.reconnect = ReconnectPolicy(initialDelay: .seconds(5), maximumDelay: .seconds(10))
        }
        try broker.kill()
        try await waitForState(client, "notices the broker is gone") { !$0.isConnected }
        let clock = ContinuousClock()
        let started = clock.now
        let error = await #expect(throws: MQTTError.self) {
            try await client.publish("x/y", payload: bytes("lost?"), qos: .atLeastOnce)
        }
        #expect(error?.code == .notConnected)
        #expect(error?.message.contains("not connected to the broker at 127.0.0.1:\(broker.port)") == true)
        // Fails at once, not after a timeout.
        #expect(started.duration(to: clock.now) < .seconds(1))
        await client.shutdown()
    }

    @Test("shutdown is clean when the broker is already gone, and again when repeated")
    func teardownWithoutBroker() async throws {
        let broker = try await MosquittoBroker.start()
        let client = try await makeClient(broker, "orphan")
        try await client.subscribe("o/#")
        let messages = client.messages
        broker.stopNow()
        try await waitForState(client, "notices the broker is gone") { !$0.isConnected }
        await client.shutdown()
        await client.shutdown()
        #expect(client.connectionState == .closed)
        // The message stream ended.
        var iterator = messages.makeAsyncIterator()
        #expect(await iterator.next() == nil)
        let error = await #expect(throws: MQTTError.self) {
            try await client.publish("o/x", payload: [], qos: .atMostOnce)
        }
        #expect(error?.code == .shutdown)
    }

    @Test("connect() to a port with no broker fails at once and names the address")
    func connectRefused() async throws {
        let port = try freeLoopbackPort()
        let client = try MQTTClient(configuration: MQTTConfiguration(host: "127.0.0.1", port: port, clientID: "nobody"))
        let error = await #expect(throws: MQTTError.self) { try await client.connect() }
        #expect(error?.code == .connectionRefused)
        #expect(error?.message.contains("127.0.0.1:\(port)") == true)
        await client.shutdown()
    }

    @Test("start() keeps trying until the broker appears")
    func startRetriesUntilBrokerAppears() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        try broker.kill()
        let client = try await makeClient(broker, "patient", connect: false)
        client.start()
        try await waitForState(client, "reports a failed attempt with a retry time") {
            if case .disconnected(_?, _?) = $0 { return true }
            return false
        }
        try await broker.restart()
        try await waitForState(client, timeout: .seconds(15), "connects once the broker is back") { $0.isConnected }
        await client.shutdown()
    }

    @Test("full-jitter backoff stays within its exponential, capped window and spreads attempts")
    func backoff() {
        let policy = ReconnectPolicy(initialDelay: .milliseconds(100), maximumDelay: .seconds(5))
        #expect(policy.ceiling(attempt: 0) == .milliseconds(100))
        #expect(policy.ceiling(attempt: 3) == .milliseconds(800))
        #expect(policy.ceiling(attempt: 10) == .seconds(5))
        #expect(policy.ceiling(attempt: 1000) == .seconds(5))
        var rng = SeededGenerator(seed: 42)
        for attempt in 0..<12 {
            let delays = (0..<500).map { _ in policy.delay(attempt: attempt, using: &rng) }
            #expect(delays.allSatisfy { $0 >= .zero && $0 <= policy.ceiling(attempt: attempt) })
            // Spread: both halves of the window are used.
            let half = policy.ceiling(attempt: attempt) / 2
            #expect(delays.contains { $0 < half } && delays.contains { $0 > half })
        }
    }
}
