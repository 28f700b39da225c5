import FleetProtocol
import Mosquitto

/// The topics a console uses besides the devices' own: where devices answer
/// its commands, and what it subscribes to.
///
/// Each device's copy of a command names a reply topic of its own,
/// `{root}/_console/reply/{instance}/{site}/{device}`, which the broker's ACL
/// lets exactly that device write (deploy/provision.sh grants it for every
/// provisioned console instance; issue 20, item 3). So the topic says who
/// answered, and a device cannot answer for another one or invent reply
/// topics to fill the broker with retained messages.
struct ConsoleTopics: Sendable {
    let root: TopicRoot
    let instance: Identifier
    let isReplica: Bool

    init(_ context: ConsoleContext) {
        root = context.configuration.topicRoot
        instance = context.instance
        isReplica = context.isReplica
    }

    /// The shared-subscription group every replica joins.
    static let shareGroup = "console"

    /// Under which all of this console's reply topics lie.
    var replyTopic: String { root.consoleReplyTopic(instance: instance) }

    /// The Response Topic for `address`'s copy of a command.
    func replyTopic(for address: DeviceAddress) -> String {
        root.consoleReplyTopic(instance: instance, for: address)
    }

    /// What this console subscribes to for replies: `{replyTopic}/+/+`.
    var replyFilter: String { root.consoleReplyFilter(instance: instance) }

    /// Whether `topic` is this console's reply topic or under it (anything
    /// there is a reply to check, or malformed; never a device message).
    func isReplyTopic(_ topic: String) -> Bool {
        topic == replyTopic || topic.hasPrefix(replyTopic + "/")
    }

    /// The device whose reply topic `topic` is, or nil.
    func replyingDevice(_ topic: String) -> DeviceAddress? {
        root.replyingDevice(topic, instance: instance)
    }

    /// What a console subscribes to: everything under the root, or for a
    /// replica the high-rate device topics through the shared group (each
    /// message reaches one replica) and the retained, low-rate ones (status,
    /// usage, config) directly, so each replica knows presence, usage and
    /// configs first-hand; and its reply topics, without the broker's
    /// retained copies (a retained reply is never a live answer).
    var subscriptions: [Subscription] {
        guard isReplica else {
            return [Subscription(root.everythingFilter, qos: .atLeastOnce), Subscription(replyFilter, qos: .atLeastOnce, retainHandling: .never)]
        }
        let shared: [DeviceTopicKind] = [.telemetry, .events]
        let everyone: [DeviceTopicKind] = [.status, .usage, .configReported, .configDesired]
        // (The group is a constant that the contract's rules accept, so the `try?` never drops one.)
        return shared.compactMap { (try? TopicRoot.sharedSubscription(group: Self.shareGroup, filter: root.filter($0))).map { Subscription($0, qos: .atLeastOnce) } }
            + everyone.map { Subscription(root.filter($0), qos: .atLeastOnce) }
            + [Subscription(replyFilter, qos: .atLeastOnce, retainHandling: .never)]
    }
}
