import FleetProtocol
import Mosquitto

/// Where devices answer this console's commands (issue 20, item 3).
///
/// Each device's copy of a command names a reply topic of its own,
/// `{root}/_console/reply/{instance}/{site}/{device}`, which the broker's ACL
/// lets exactly that device write (deploy/provision.sh grants it for every
/// provisioned console instance). So the topic says who answered, and a
/// device cannot answer for another one or invent reply topics to fill the
/// broker with retained messages. A reply that arrives retained is never a
/// live answer (the broker only sets the flag when it replays a stored
/// message) and is dropped: a device that published its reply with retain
/// cannot have it applied again at every console restart.
extension ConsoleCore {
    var instanceIdentifier: Identifier {
        Identifier(rawValue: configuration.instance) ?? Identifier(rawValue: "console")!
    }

    /// The Response Topic for `address`'s copy of a command.
    func replyTopic(for address: DeviceAddress) -> String {
        configuration.topicRoot.consoleReplyTopic(instance: instanceIdentifier, for: address)
    }

    /// What this console subscribes to for replies: `{replyTopic}/+/+`.
    var replyFilter: String {
        configuration.topicRoot.consoleReplyFilter(instance: instanceIdentifier)
    }

    /// Whether `topic` is this console's reply topic or under it (anything
    /// there is a reply to check, or malformed; never a device message).
    func isReplyTopic(_ topic: String) -> Bool {
        topic == replyTopic || topic.hasPrefix(replyTopic + "/")
    }

    /// The device a reply message comes from, by its topic; nil (counted as
    /// malformed) when it is retained or not exactly a device's reply topic.
    func replyingDevice(_ message: MQTTMessage) -> DeviceAddress? {
        if message.retain {
            metrics.malformed.increment()
            logger.debug("ignored a retained command reply", metadata: ["topic": "\(message.topic.prefix(200))", "bytes": "\(message.payload.count)"])
            return nil
        }
        guard let address = configuration.topicRoot.replyingDevice(message.topic, instance: instanceIdentifier) else {
            metrics.malformed.increment()
            logger.debug("ignored a reply on a topic that is no device's reply topic", metadata: ["topic": "\(message.topic.prefix(200))"])
            return nil
        }
        return address
    }
}
