import FleetTestSupport
import Mosquitto
import Testing

@Suite("MQTT 5 client against a real mosquitto", .timeLimit(.minutes(3)), .tags(.e2e))
struct ClientRoundTripTests {
    @Test("messages round-trip at QoS 0, 1 and 2 with every MQTT 5 property", arguments: QoS.allCases)
    func roundTrip(qos: QoS) async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        let subscriber = try await makeClient(broker, "sub")
        let publisher = try await makeClient(broker, "pub")
        let inbox = MessageCollector(subscriber)
        let granted = try await subscriber.subscribe([Subscription("t/rt/#", qos: .exactlyOnce)])
        #expect(granted == [.exactlyOnce])

        let props = MQTTProperties(
            responseTopic: "t/replies/42",
            correlationData: [0, 1, 2, 0xFF],
            userProperties: [UserProperty("site", "clinic-a"), UserProperty("site", "again"), UserProperty("trace", "x")],
            messageExpiryInterval: 120,
            contentType: "application/json",
            payloadFormatIndicator: 1)
        let result = try await publisher.publish("t/rt/\(qos.rawValue)", payload: bytes(#"{"n":1}"#), qos: qos, properties: props)
        #expect(result.reasonCode == 0)

        let got = try await inbox.waitFor(1).first
        let message = try #require(got)
        #expect(message.topic == "t/rt/\(qos.rawValue)")
        #expect(text(message.payload) == #"{"n":1}"#)
        #expect(message.qos == qos)
        #expect(message.retain == false)
        #expect(message.properties.responseTopic == "t/replies/42")
        #expect(message.properties.correlationData == [0, 1, 2, 0xFF])
        #expect(message.properties.userProperties == props.userProperties)
        #expect(message.properties.contentType == "application/json")
        #expect(message.properties.payloadFormatIndicator == 1)
        // The broker forwards the remaining lifetime, never more than was set.
        let expiry = try #require(message.properties.messageExpiryInterval)
        #expect(expiry <= 120 && expiry >= 110)
        await publisher.shutdown()
        await subscriber.shutdown()
    }

    @Test("request/response: the reply goes to the response topic with the same correlation data")
    func requestResponse() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        let device = try await makeClient(broker, "device")
        let console = try await makeClient(broker, "console")
        try await device.subscribe("dev/cmd", qos: .atLeastOnce)
        try await console.subscribe("console/replies/#", qos: .atLeastOnce)
        let replies = MessageCollector(console)

        // The device answers every command on its response topic.
        let responder = Task {
            for await request in device.messages {
                guard let replyTo = request.properties.responseTopic else { continue }
                _ = try? await device.publish(
                    replyTo, payload: bytes("pong:" + text(request.payload)), qos: .atLeastOnce,
                    properties: MQTTProperties(correlationData: request.properties.correlationData))
            }
        }
        for i in 0..<3 {
            try await console.publish("dev/cmd", payload: bytes("ping\(i)"), qos: .atLeastOnce,
                                      properties: MQTTProperties(responseTopic: "console/replies/r1", correlationData: bytes("corr-\(i)")))
        }
        let got = try await replies.waitFor(3)
        #expect(Set(got.map { text($0.payload) }) == ["pong:ping0", "pong:ping1", "pong:ping2"])
        for reply in got {
            let n = text(reply.payload).last!
            #expect(reply.properties.correlationData == bytes("corr-\(n)"))
        }
        responder.cancel()
        await device.shutdown()
        await console.shutdown()
    }

    @Test("a retained message reaches a subscriber that comes later, flagged retained")
    func retained() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        let publisher = try await makeClient(broker, "pub")
        try await publisher.publish("site/a/dev1/status", payload: bytes("online"), qos: .atLeastOnce, retain: true)

        let late = try await makeClient(broker, "late")
        let inbox = MessageCollector(late)
        try await late.subscribe("site/+/+/status")
        let message = try #require(try await inbox.waitFor(1).first)
        #expect(message.retain)
        #expect(text(message.payload) == "online")

        // An empty retained payload clears it: a new subscriber gets nothing
        // retained, only the live message published afterwards.
        try await publisher.publish("site/a/dev1/status", payload: [], qos: .atLeastOnce, retain: true)
        let later = try await makeClient(broker, "later")
        let inbox2 = MessageCollector(later)
        try await later.subscribe("site/+/+/status")
        try await publisher.publish("site/a/dev1/status", payload: bytes("live"), qos: .atLeastOnce)
        let first = try #require(try await inbox2.waitFor(1).first)
        #expect(text(first.payload) == "live")
        #expect(first.retain == false)
        for c in [publisher, late, later] { await c.shutdown() }
    }

    @Test("no-local subscriptions don't echo the client's own publishes")
    func noLocal() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        let client = try await makeClient(broker, "self")
        let other = try await makeClient(broker, "other")
        let inbox = MessageCollector(client)
        try await client.subscribe([Subscription("echo/#", qos: .atLeastOnce, noLocal: true)])
        try await client.publish("echo/mine", payload: bytes("mine"), qos: .atLeastOnce)
        try await other.publish("echo/theirs", payload: bytes("theirs"), qos: .atLeastOnce)
        let got = try await inbox.waitFor(1)
        #expect(got.map(\.topic) == ["echo/theirs"])
        await client.shutdown()
        await other.shutdown()
    }

    @Test("unsubscribe stops delivery")
    func unsubscribe() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        let client = try await makeClient(broker, "unsub")
        let inbox = MessageCollector(client)
        try await client.subscribe("u/a")
        try await client.subscribe("u/b")
        try await client.unsubscribe(["u/a"])
        try await client.publish("u/a", payload: bytes("a"), qos: .atLeastOnce)
        try await client.publish("u/b", payload: bytes("b"), qos: .atLeastOnce)
        let got = try await inbox.waitFor(1)
        #expect(got.map(\.topic) == ["u/b"])
        await client.shutdown()
    }

    @Test("a slow consumer loses nothing: the client stops reading instead of dropping")
    func backpressure() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        // A keepalive longer than the publishing below can take on a loaded
        // machine: a pause past twice the keepalive ends the connection (the
        // next test), which is not what this one is about.
        let consumer = try await makeClient(broker, "slow") { $0.inboundBufferCapacity = 16; $0.keepAliveSeconds = 300 }
        try await consumer.subscribe("bp/#", qos: .atLeastOnce)
        let publisher = try await makeClient(broker, "fast") { $0.keepAliveSeconds = 300 }
        let total = 800 // below mosquitto's default max_queued_messages (1000)
        for i in 0..<total {
            try await publisher.publish("bp/x", payload: bytes("\(i)"), qos: .atLeastOnce)
        }
        #expect(consumer.connectionState == .connected(sessionPresent: false), "the pause stayed within the keepalive")
        // Only now start reading: the buffer held 16 and the rest waited in TCP and the broker.
        let inbox = MessageCollector(consumer)
        let got = try await inbox.waitFor(total, timeout: .seconds(60))
        #expect(got.map { Int(text($0.payload)) ?? -1 } == Array(0..<total))
        await publisher.shutdown()
        await consumer.shutdown()
    }

    @Test("a consumer that falls behind for longer than the keepalive: the client says so, reconnects, and on a persistent session nothing is lost")
    func pauseBeyondKeepalive() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        let consumer = try await makeClient(broker, "behind") {
            $0.inboundBufferCapacity = 8
            $0.keepAliveSeconds = 5
            $0.cleanStart = false
            $0.sessionExpiry = 600
        }
        try await consumer.subscribe("late/#", qos: .atLeastOnce)
        let states = StateRecorder(consumer)
        let publisher = try await makeClient(broker, "source")
        let total = 100
        for i in 0..<total {
            try await publisher.publish("late/x", payload: bytes("\(i)"), qos: .atLeastOnce)
        }
        // Nobody reads: the buffer is full, the client stops reading, and
        // about two keepalives later it ends the connection itself.
        let lost = try await waitForValue(timeout: .seconds(40), "the paused consumer's connection to end by its keepalive") {
            states.states.lazy.compactMap { state -> MQTTError? in
                if case .disconnected(let error?, _) = state { return error }
                return nil
            }.first
        }
        #expect(lost.message.contains("consumer fell behind"), "\(lost.message)")
        #expect(!lost.message.contains("broker stopped answering"), "\(lost.message)")
        // Reading now: every message arrives (some twice: at least once).
        let inbox = MessageCollector(consumer)
        try await waitUntil(timeout: .seconds(60), "all \(total) messages after the reconnect") {
            Set(inbox.messages.map { Int(text($0.payload)) ?? -1 }) == Set(0..<total)
        }
        await publisher.shutdown()
        await consumer.shutdown()
    }

    @Test("a quiet client's loop sleeps until its next deadline instead of spinning through the last millisecond before it")
    func quietLoopSleeps() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        let group = MQTTEventLoopGroup(numberOfThreads: 1)
        let client = try await makeClient(broker, "quiet", group: group) { $0.keepAliveSeconds = 60 }
        let clock = ContinuousClock()
        let before = group.pollCount
        // Ten QoS 1 publishes a second for three seconds: each PUBACK wakes
        // the loop at a moment unrelated to its 1 s keepalive tick, so the
        // wait that follows ends in a fraction of a millisecond. Rounded down
        // to whole milliseconds, that fraction was spent in poll(…, 0) calls:
        // about 900 polls in this test instead of about 30.
        let start = clock.now
        for i in 1...30 {
            try await client.publish("quiet/nobody", payload: bytes("\(i)"), qos: .atLeastOnce)
            try await Task.sleep(until: start + .milliseconds(100 * i), clock: clock)
        }
        let polls = group.pollCount - before
        #expect(polls <= 150, "\(polls) polls for 30 publishes in 3 s")
        await client.shutdown()
    }

    @Test("a queued QoS 1 stream is read many messages per wake-up, not one message per poll")
    func queuedStreamReadInBatches() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        let topic = "batch/q1"
        func sessionConfig(_ c: inout MQTTConfiguration) {
            c.clientID = "batch-reader"
            c.cleanStart = false
            c.sessionExpiry = 3600
            c.inboundBufferCapacity = 10_000
        }
        let setup = try await makeClient(broker, "batch", configure: sessionConfig)
        try await setup.subscribe(topic, qos: .atLeastOnce)
        await setup.shutdown()
        let publisher = try await makeClient(broker, "batch-pub")
        let n = 900 // mosquitto queues at most 1,000 messages for a session that is away
        for i in 0..<n { try publisher.publishNoWait(topic, payload: bytes("\(i)"), qos: .atLeastOnce) }
        try await publisher.waitForAcknowledgements()
        await publisher.shutdown()

        // The broker sends the queue as fast as the reader acknowledges it.
        // Every PUBACK libmosquitto queues also writes a byte to its own
        // wake-up socketpair, which nothing drains; that write's EAGAIN was
        // taken for "socket empty", and the loop went back to poll(2) after
        // every message (626 polls here, against 6 to 8 now; 0.7x mosquitto_sub in
        // mqtt-bench).
        let group = MQTTEventLoopGroup(numberOfThreads: 1)
        let before = group.pollCount
        let reader = try await makeClient(broker, "batch", group: group, configure: sessionConfig)
        let inbox = MessageCollector(reader)
        try await inbox.waitFor(n, timeout: .seconds(30))
        let polls = group.pollCount - before
        #expect(polls < n / 4, "\(polls) polls to read \(n) queued messages")
        await reader.shutdown()
    }

    @Test("many clients share one event-loop thread")
    func manyClientsOneThread() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        let group = MQTTEventLoopGroup(numberOfThreads: 1)
        var clients: [MQTTClient] = []
        for i in 0..<50 {
            let c = try await makeClient(broker, "many\(i)", group: group)
            try await c.subscribe("many/\(i)", qos: .atLeastOnce)
            clients.append(c)
        }
        #expect(group.clientCount == 50)
        let inboxes = clients.map(MessageCollector.init)
        for (i, c) in clients.enumerated() {
            try await c.publish("many/\((i + 1) % 50)", payload: bytes("from \(i)"), qos: .atLeastOnce)
        }
        for (i, inbox) in inboxes.enumerated() {
            let got = try await inbox.waitFor(1)
            #expect(text(got[0].payload) == "from \((i + 49) % 50)")
        }
        for c in clients { await c.shutdown() }
        try await waitUntil(timeout: .seconds(5), "all clients left the loop") { group.clientCount == 0 }
    }
}
