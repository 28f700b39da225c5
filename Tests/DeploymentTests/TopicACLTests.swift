import FleetTestSupport
import FleetProtocol
import Foundation
import Mosquitto
import Testing

/// What each identity may publish and read, with the ACL file provision.sh
/// writes, on a broker running the shipped config. Absence is always proven
/// the same way: after the refused attempts, an allowed marker goes the same
/// way, and once it arrived nothing refused can still be in flight.
@Suite("shipped broker config: who may use which topic", .tags(.e2e))
struct TopicACLTests {
    /// clinic-north/massager-01 (A), clinic-north/massager-02 (B) and
    /// spa-south/massager-01 (same device id as A, another site), with a
    /// console-user client reading `massage/v1/#`.
    struct Fleet {
        let fleet: ProvisionedFleet
        let broker: MosquittoBroker
        let a: DeviceBundle
        let b: DeviceBundle
        let twin: DeviceBundle
        let console: MQTTClient
        let consoleInbox: MessageCollector

        static func start() async throws -> Fleet {
            let fleet = try await ProvisionedFleet.create()
            let broker = try await fleet.startBroker()
            do {
                let a = try await fleet.device("clinic-north", "massager-01", on: broker)
                let b = try await fleet.device("clinic-north", "massager-02", on: broker)
                let twin = try await fleet.device("spa-south", "massager-01", on: broker)
                let (console, inbox) = try await fleet.consoleSubscriber(broker)
                return Fleet(fleet: fleet, broker: broker, a: a, b: b, twin: twin, console: console, consoleInbox: inbox)
            } catch {
                broker.stopNow()
                throw error
            }
        }

        func stop() async {
            await console.shutdown()
            broker.stopNow()
        }

        /// `client` publishes `marker` on `topic` (allowed) and the console
        /// receives it: whatever `client` sent before has been routed.
        func flush(_ client: MQTTClient, via topic: String, marker: String) async throws {
            try await client.publish(topic, payload: bytes(marker), qos: .atLeastOnce)
            try await waitUntil(timeout: .seconds(10), "the console to receive marker \(marker)") {
                consoleInbox.messages(on: topic).contains { text($0.payload) == marker }
            }
        }
    }

    /// Publishes (QoS 1, so the broker answers) and expects "not authorised".
    func expectRefused(
        _ client: MQTTClient, _ topic: String, retain: Bool = false, sourceLocation: SourceLocation = #_sourceLocation
    ) async {
        let error = await #expect(throws: MQTTError.self, "publishing on \(topic)", sourceLocation: sourceLocation) {
            try await client.publish(topic, payload: bytes("forged \(topic)"), qos: .atLeastOnce, retain: retain)
        }
        #expect(error?.code == .notAuthorized, "publishing on \(topic): \(String(describing: error))", sourceLocation: sourceLocation)
    }

    @Test("a device publishes its own status, telemetry, events, usage, reported config and replies; the console reads them")
    func ownTopicsAllowed() async throws {
        let f = try await Fleet.start()
        let device = try await connectedClient(f.a.settings, name: "a")
        let own = ["status", "telemetry", "events", "usage", "config/reported"].map { f.a.topic($0) }
            + [f.a.replyTopic()]
        for topic in own {
            try await device.publish(topic, payload: bytes("own \(topic)"), qos: .atLeastOnce, retain: topic.hasSuffix("status"))
        }
        try await waitUntil(timeout: .seconds(10), "the console to read all \(own.count) messages") {
            own.allSatisfy { topic in f.consoleInbox.messages(on: topic).contains { text($0.payload) == "own \(topic)" } }
        }
        await device.shutdown()
        await f.stop()
    }

    @Test("a device cannot publish on another device's topics, including the same device id at another site")
    func otherDevicesTopicsRefused() async throws {
        let f = try await Fleet.start()
        let device = try await connectedClient(f.a.settings, name: "a")
        let kinds = ["status", "telemetry", "events", "usage", "config/reported", "cmd", "config/desired"]
        for other in [f.b, f.twin] {
            for kind in kinds {
                await expectRefused(device, other.topic(kind), retain: kind == "status")
            }
        }
        // Outside the device tree, and around it.
        for topic in ["\(Deploy.root)/clinic-north/massager-01", "\(Deploy.root)/clinic-north/massager-01/status/x",
                      "\(Deploy.root)/clinic-north", "other/topic", "\(Deploy.root)/_console/reply/console/x"] {
            await expectRefused(device, topic)
        }
        try await f.flush(device, via: f.a.topic("status"), marker: "a-marker")
        let forged = f.consoleInbox.messages.filter { text($0.payload).hasPrefix("forged") }
        #expect(forged.isEmpty, "the console received \(forged.map(\.topic))")
        await device.shutdown()
        await f.stop()
    }

    @Test("a device cannot send commands or desired configs, not even to itself")
    func commandsRefused() async throws {
        let f = try await Fleet.start()
        let device = try await connectedClient(f.a.settings, name: "a")
        let target = try await connectedClient(f.b.settings, name: "b")
        let targetInbox = MessageCollector(target)
        try await target.subscribe(f.b.topic("cmd"), qos: .atLeastOnce)
        try await target.subscribe(f.b.topic("config/desired"), qos: .atLeastOnce)

        for topic in [f.a.topic("cmd"), f.a.topic("config/desired"), f.b.topic("cmd"), f.b.topic("config/desired"),
                      f.twin.topic("cmd")] {
            await expectRefused(device, topic, retain: topic.hasSuffix("desired"))
        }
        // The console's command reaches B after everything A tried.
        try await f.console.publish(f.b.topic("cmd"), payload: bytes("console command"), qos: .atLeastOnce)
        try await waitUntil(timeout: .seconds(10), "B to receive the console's command") {
            targetInbox.messages.contains { text($0.payload) == "console command" }
        }
        #expect(targetInbox.messages.allSatisfy { text($0.payload) == "console command" },
                "B received \(targetInbox.messages.map { text($0.payload) })")
        try await f.flush(device, via: f.a.topic("status"), marker: "a-marker")
        #expect(f.consoleInbox.messages.allSatisfy { !text($0.payload).hasPrefix("forged") })
        await target.shutdown()
        await device.shutdown()
        await f.stop()
    }

    @Test("a device cannot forge the console's state, by publishing or through its will")
    func consoleStateRefused() async throws {
        let f = try await Fleet.start()
        let stateTopic = "\(Deploy.root)/_console/state"
        let device = try await connectedClient(f.a.settings, name: "a")
        await expectRefused(device, stateTopic, retain: true)
        await device.shutdown()

        // A will naming the console's state topic: the broker accepts the
        // connection but, checking the will against the ACL, never sends it.
        let willing = try await connectedClient(f.a.settings, name: "a-will") {
            $0.will = Will(topic: stateTopic, payload: bytes("forged will"), qos: .atLeastOnce, retain: true)
        }
        await willing.closeAbruptly()
        try await f.broker.waitForLog(containing: "Client \(f.a.identity) closed its connection")

        let honest = try await connectedClient(f.a.settings, name: "a")
        try await f.flush(honest, via: f.a.topic("status"), marker: "a-marker")
        #expect(f.consoleInbox.messages(on: stateTopic).isEmpty)
        await honest.shutdown()

        // A new subscriber gets no retained state either. (It replaces the
        // first console connection: the broker makes the username the
        // client id, so one identity has one session.)
        await f.console.shutdown()
        let (late, lateInbox) = try await f.fleet.consoleSubscriber(f.broker)
        let b = try await connectedClient(f.b.settings, name: "b")
        try await b.publish(f.b.topic("status"), payload: bytes("b-marker"), qos: .atLeastOnce)
        await b.shutdown()
        try await waitUntil(timeout: .seconds(10), "the late console to see B's marker") {
            lateInbox.messages(on: f.b.topic("status")).contains { text($0.payload) == "b-marker" }
        }
        #expect(lateInbox.messages(on: stateTopic).isEmpty)
        await late.shutdown()
        await f.stop()
    }

    @Test("a device's subscriptions, even to # and to another device's cmd, deliver only its own cmd and desired config")
    func subscriptionsFiltered() async throws {
        let f = try await Fleet.start()
        // Retained before anyone subscribes: desired configs for all three.
        for other in [f.b, f.twin] {
            try await f.console.publish(other.topic("config/desired"), payload: bytes("secret desired \(other.identity)"),
                                        qos: .atLeastOnce, retain: true)
        }
        try await f.console.publish(f.a.topic("config/desired"), payload: bytes("own desired"), qos: .atLeastOnce, retain: true)
        let b = try await connectedClient(f.b.settings, name: "b")
        try await b.publish(f.b.topic("status"), payload: bytes("secret status"), qos: .atLeastOnce, retain: true)

        let device = try await connectedClient(f.a.settings, name: "a")
        let inbox = MessageCollector(device)
        // mosquitto 2.0 grants every SUBSCRIBE and applies the read ACL to
        // each message it would deliver (retained ones included).
        for filter in ["#", "\(Deploy.root)/#", f.b.topic("cmd"), f.twin.topic("cmd"), "\(Deploy.root)/+/massager-01/cmd",
                       "\(Deploy.root)/+/+/config/desired", "\(Deploy.root)/_console/#"] {
            try await device.subscribe(filter, qos: .atLeastOnce)
        }
        try await f.console.publish(f.b.topic("cmd"), payload: bytes("secret cmd b"), qos: .atLeastOnce)
        try await f.console.publish(f.twin.topic("cmd"), payload: bytes("secret cmd twin"), qos: .atLeastOnce)
        try await b.publish(f.b.topic("telemetry"), payload: bytes("secret telemetry"), qos: .atLeastOnce)
        try await b.publish(f.b.replyTopic(), payload: bytes("secret reply"), qos: .atLeastOnce)
        try await f.console.publish(f.a.topic("cmd"), payload: bytes("own cmd"), qos: .atLeastOnce)

        try await waitUntil(timeout: .seconds(10), "A to receive its own command and retained desired config") {
            let payloads = Set(inbox.messages.map { text($0.payload) })
            return payloads.contains("own cmd") && payloads.contains("own desired")
        }
        let foreign = inbox.messages.filter { $0.topic != f.a.topic("cmd") && $0.topic != f.a.topic("config/desired") }
        #expect(foreign.isEmpty, "A received \(foreign.map { "\($0.topic): \(text($0.payload))" })")
        await b.shutdown()
        await device.shutdown()
        await f.stop()
    }

    @Test("the console writes commands, desired configs and its state, and cannot forge a device's messages")
    func consoleGrants() async throws {
        let f = try await Fleet.start()
        try await f.console.publish("\(Deploy.root)/_console/state", payload: bytes("online"), qos: .atLeastOnce, retain: true)
        try await f.console.publish(f.a.topic("config/desired"), payload: bytes("desired"), qos: .atLeastOnce, retain: true)
        try await f.console.publish(f.twin.topic("cmd"), payload: bytes("command"), qos: .atLeastOnce)
        for kind in ["status", "telemetry", "events", "usage", "config/reported"] {
            await expectRefused(f.console, f.a.topic(kind), retain: kind == "status")
        }
        await expectRefused(f.console, "elsewhere/topic")
        try await waitUntil(timeout: .seconds(10), "the console to read its own state back") {
            f.consoleInbox.messages(on: "\(Deploy.root)/_console/state").contains { text($0.payload) == "online" }
        }
        #expect(f.consoleInbox.messages.allSatisfy { !text($0.payload).hasPrefix("forged") })
        await f.stop()
    }

    @Test("a device writes exactly its own reply topic of each provisioned console; every other reply topic is refused, retained or not")
    func replyTopicsExact() async throws {
        let f = try await Fleet.start()
        // A second console instance: every device gets its reply topic there too.
        try await f.fleet.provisionAndWaitForReload(["console", "replica-2"], on: f.broker)
        let device = try await connectedClient(f.a.settings, name: "a")
        let own = [f.a.replyTopic(), f.a.replyTopic(instance: "replica-2")]
        for topic in own {
            try await device.publish(topic, payload: bytes("own \(topic)"), qos: .atLeastOnce)
        }
        let reply = "\(Deploy.root)/_console/reply"
        let foreign = [
            // Another device's reply topics, at the same site and at another.
            f.b.replyTopic(), f.twin.replyTopic(), f.b.replyTopic(instance: "replica-2"),
            // The shared reply topic of old, and around the device's own.
            "\(reply)/console", "\(reply)/console/clinic-north", "\(f.a.replyTopic())/x",
            // A console instance that was never provisioned, and arbitrary topics
            // (each would have been one more retained message for the broker to keep).
            "\(reply)/console-9/clinic-north/massager-01", "\(reply)/x", "\(reply)/x/y/z", "\(reply)",
        ]
        for topic in foreign {
            await expectRefused(device, topic, retain: true)
            await expectRefused(device, topic, retain: false)
        }
        try await f.flush(device, via: f.a.topic("status"), marker: "a-marker")
        for topic in own {
            #expect(f.consoleInbox.messages(on: topic).contains { text($0.payload) == "own \(topic)" }, "\(topic) did not arrive")
        }
        let forged = f.consoleInbox.messages.filter { text($0.payload).hasPrefix("forged") }
        #expect(forged.isEmpty, "the console received \(forged.map(\.topic))")
        await device.shutdown()
        await f.stop()
    }

    @Test("the broker refuses a packet over the protocol's payload limit (plus headers) and tells MQTT 5 clients the limit")
    func oversizedPacketRefused() async throws {
        let f = try await Fleet.start()
        let device = try await connectedClient(f.a.settings, name: "a")
        // The largest payload the protocol allows passes, on the longest topic a device writes.
        let largest = [UInt8](repeating: UInt8(ascii: "x"), count: ProtocolLimits.maxPayloadBytes)
        try await device.publish(f.a.replyTopic(), payload: largest, qos: .atLeastOnce)
        try await waitUntil(timeout: .seconds(10), "the console to receive the largest allowed payload") {
            f.consoleInbox.messages(on: f.a.replyTopic()).contains { $0.payload.count == largest.count }
        }
        // An MQTT 5 client learned the broker's maximum from the CONNACK and
        // refuses a bigger packet itself.
        let oversized = [UInt8](repeating: UInt8(ascii: "y"), count: ProtocolLimits.maxPayloadBytes + 8192)
        let error = await #expect(throws: MQTTError.self) {
            try await device.publish(f.a.topic("status"), payload: oversized, qos: .atLeastOnce, retain: true)
        }
        #expect(error?.code == .invalidArgument, "\(String(describing: error))")
        await device.shutdown()

        // An MQTT 3.1.1 client is not told: it sends the packet, and the broker
        // drops the connection instead of storing the retained message.
        let file = f.fleet.directory.file("oversized.bin")
        try Data(oversized).write(to: file)
        let settings = f.a.settings
        let pub = try await ProcessRunner.run(
            try ExecutableLocator.find("mosquitto_pub"),
            arguments: ["-h", settings.host, "-p", "\(settings.port)", "-V", "mqttv311", "-i", "\(f.a.identity)-v311",
                        "-u", settings.username, "-P", settings.password,
                        "--cafile", settings.caFile.path, "--cert", try #require(settings.certificateFile).path,
                        "--key", try #require(settings.keyFile).path,
                        "-q", "1", "-r", "-t", f.a.topic("status"), "-f", file.path],
            timeout: .seconds(30))
        #expect(!pub.succeeded, "mosquitto_pub reported success: \(pub)")
        try await f.broker.waitForLog(containing: "Client \(f.a.identity) disconnected due to oversize packet")
        let honest = try await connectedClient(f.a.settings, name: "a")
        try await f.flush(honest, via: f.a.topic("telemetry"), marker: "after-oversized")
        #expect(!f.consoleInbox.messages(on: f.a.topic("status")).contains { $0.payload.count == oversized.count })
        await honest.shutdown()
        await f.stop()
    }
}
