import FleetProtocol
import Foundation
import Mosquitto
import ServiceLifecycle

/// The console's MQTT connection: starts the client, and at every
/// (re)connection subscribes (`ConsoleTopics.subscriptions`), announces the
/// console `online` (retained; the client's will says `offline`), and tells
/// `connected` — the command service sends what waited meanwhile. The
/// messages themselves are ingest's (IngestService); shutting the client
/// down is the console's last step (`ConsoleCore.run`).
final class BrokerLink: Service, Sendable {
    let context: ConsoleContext
    let client: MQTTClient
    let topics: ConsoleTopics
    let connected: @Sendable () async -> Void

    init(context: ConsoleContext, client: MQTTClient, topics: ConsoleTopics, connected: @escaping @Sendable () async -> Void) {
        self.context = context
        self.client = client
        self.topics = topics
        self.connected = connected
    }

    /// The will a console leaves with the broker.
    static func will(_ configuration: ConsoleConfiguration) -> Will {
        Will(topic: configuration.topicRoot.consoleStateTopic,
             payload: Array((try? FleetJSON.encode(ConsoleState(state: .offline, instance: configuration.instance))) ?? Data()),
             qos: .atLeastOnce, retain: true)
    }

    func run() async throws {
        client.start()
        var wasConnected = false
        for await change in client.connectionStates.cancelOnGracefulShutdown() {
            defer { wasConnected = change.isConnected }
            if wasConnected && change.isConnected { continue } // the same connection, seen twice
            guard case .connected = change else { continue }
            context.logger.info("connected to the broker")
            do {
                try await client.subscribe(topics.subscriptions)
                try await announce(.online)
            } catch {
                context.logger.warning("could not subscribe or announce; retried at the next connection", metadata: ["error": "\(error)"])
            }
            await connected()
        }
    }

    /// Publishes the console's state, retained, at its topic.
    func announce(_ state: PresenceState) async throws {
        let message = ConsoleState(state: state, ts: context.clock.now(), instance: context.configuration.instance)
        try await client.publish(context.configuration.topicRoot.consoleStateTopic, payload: Array(try FleetJSON.encode(message)), qos: .atLeastOnce, retain: true)
    }

    /// Says `offline` if it can, and closes the connection.
    func close() async {
        if client.isConnected { try? await announce(.offline) }
        await client.shutdown()
    }
}
