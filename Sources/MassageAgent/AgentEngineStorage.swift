import FleetProtocol
import Foundation
import MassageEngine

/// The engine's storage on a massager: its ledger, active-session marker,
/// schedules, latched faults and pain lockout in the agent's SQLite file,
/// and its events stamped into the outbox **in the same transaction**. So a
/// session's `session_completed` is in the outbox exactly when the ledger
/// counts it completed and its marker is gone: a crash on either side of
/// that transaction can neither count it twice (completed and interrupted)
/// nor publish an end the ledger does not know.
///
/// Its SQLite calls block, on purpose: `EngineStorage` is synchronous, and
/// the engine calls it only from `flushPersistence()`, which the agent runs
/// on `EnginePersistence`'s own dispatch queue (the driver's persistence
/// loop, commands that need a durable result, shutdown), never on a thread
/// of the cooperative pool and never on the control thread; and from
/// `MassageEngine.init` at start-up. A blocking write on a thread of its own
/// is the right tool there; an async hop would only add one.
final class AgentEngineStorage: EngineStorage {
    let database: AgentDatabase
    let stamper: MessageStamper
    let eventsTopic: String
    let outboxLimits: OutboxLimits
    /// Called after a batch with events was stored (wakes the outbox publisher).
    let onEventsStored: @Sendable (_ dropped: Int) -> Void

    init(database: AgentDatabase, stamper: MessageStamper, eventsTopic: String, outboxLimits: OutboxLimits,
         onEventsStored: @escaping @Sendable (_ dropped: Int) -> Void) {
        self.database = database
        self.stamper = stamper
        self.eventsTopic = eventsTopic
        self.outboxLimits = outboxLimits
        self.onEventsStored = onEventsStored
    }

    var persistsEvents: Bool { true }

    func load() throws -> PersistedState { try database.load() }

    func apply(_ batch: PersistenceBatch) throws {
        guard !batch.isEmpty else { return }
        // Stamped inside the transaction: the outbox order is the `seq` order.
        let dropped = try database.apply(batch, limits: outboxLimits) {
            try batch.events.map { event in
                (topic: eventsTopic, payload: Data(try stamper.stamp(WireMapping.event(event))),
                 qos: DeviceTopicKind.events.qos, retain: DeviceTopicKind.events.retained)
            }
        }
        if !batch.events.isEmpty { onEventsStored(dropped) }
    }
}
