import FleetProtocol
import Foundation
import ServiceLifecycle

/// Replicas share their view of the fleet through the device rows: each
/// writes the devices it heard from every second (`BatchWriter`) and, here,
/// folds in the rows the others wrote (`DeviceRecord.merge`), facet by
/// facet, newest wins. Only a replica runs it.
final class DeviceRowSync: Service, Sendable {
    let context: ConsoleContext
    let state: FleetState
    let store: any DeviceRows

    init(context: ConsoleContext, state: FleetState, store: any DeviceRows) {
        self.context = context
        self.state = state
        self.store = store
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var since = 0.0
            while !Task.isCancelled {
                since = await self.sync(since: since)
                try? await self.context.clock.sleep(for: .seconds(1))
            }
        }
    }

    /// Folds in the rows changed since `since`; returns the newest change seen.
    func sync(since: Double) async -> Double {
        do {
            // Overlap by two seconds: a row committed late with an earlier time is still read.
            let (records, newest) = try await store.devicesChanged(since: max(0, since - 2), excludingWriter: context.configuration.instance)
            state.model.withLock { m in
                for other in records {
                    guard let address = try? DeviceAddress(site: other.site, device: other.device) else { continue }
                    m.adopt(other, at: address)
                }
            }
            return newest
        } catch {
            context.logger.warning("cannot read the other replicas' device rows", metadata: ["error": "\(error)"])
            return since
        }
    }
}
