import FleetTestSupport
import Foundation
import Mosquitto

/// A client for `broker` with a fresh id; connected unless `connect` is false.
func makeClient(
    _ broker: MosquittoBroker, _ name: String = "client", connect: Bool = true,
    group: MQTTEventLoopGroup = .shared,
    configure: (inout MQTTConfiguration) -> Void = { _ in }
) async throws -> MQTTClient {
    var config = MQTTConfiguration(host: broker.host, port: broker.port, clientID: "\(name)-\(UUID().uuidString.prefix(8))")
    config.keepAliveSeconds = 5
    config.reconnect = ReconnectPolicy(initialDelay: .milliseconds(50), maximumDelay: .milliseconds(500))
    configure(&config)
    let client = try MQTTClient(configuration: config, eventLoopGroup: group)
    if connect { try await client.connect() }
    return client
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
