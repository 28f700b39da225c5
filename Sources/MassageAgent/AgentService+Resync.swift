import FleetProtocol
import Foundation

extension AgentService {
    /// Puts the events the broker acknowledged last (``DeliveredEvents``)
    /// back in the outbox, with their original stamps and `historical: true`,
    /// so a console that lost some fills its gap; it stores by `(epoch, seq)`,
    /// so the ones it has are duplicates it ignores. Returns how many.
    @discardableResult
    func replayDeliveredEvents() async -> Int {
        do {
            let kept = try await deliveredEvents.all()
            guard !kept.isEmpty else { return 0 }
            try await outbox.enqueue(kept.map { (topic: $0.topic, payload: Self.markHistorical($0.payload), qos: DeviceTopicKind.events.qos, retain: false) })
            outboxSignal.yield()
            logger.info("resync: delivered events queued again", metadata: ["events.count": "\(kept.count)"])
            return kept.count
        } catch {
            logger.error("resync: could not queue the delivered events again", metadata: ["error": "\(error)"])
            return 0
        }
    }
}
