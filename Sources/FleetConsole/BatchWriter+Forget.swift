import FleetProtocol
import Foundation

/// Forgetting a device (issue 20, items 10 and 18), a persistence operation: an admin action, used by
/// `provision.sh revoke` and by re-provisioning an id that was revoked.
///
/// What goes: every number the console holds of the device — its record
/// (epoch, seqs, telemetry gaps, status, session, reported config, resync
/// state, sequence faults), its events (the (epoch, seq) keys a
/// re-provisioned device numbers again from 1), its event holes, its usage
/// baseline and its active alerts (cleared). What stays, as history: the
/// audit log, its sessions (program, times, outcome), the sites' daily usage
/// and usage totals, the alert history, commands and rollouts — and the
/// desired config the console itself keeps retained on the broker for it,
/// which a re-provisioned massager should still get.
///
/// The device is left `revoked`: its retained messages (a revoked device's
/// last status reads `online` forever, and the broker replays it at every
/// subscribe) are ignored, at once and after a restart. The first live
/// message from the id ends that: only a client holding the id's broker
/// credentials can send one, so the id was provisioned again, and it starts
/// fresh — any epoch is accepted, and it is asked for a `resync` so the
/// broker's retained copies become its own.
extension BatchWriter {
    /// Through the commit gate, so no batch taken before it commits after it.
    func forget(site: String, device: String, reason: String?, by principal: Principal) async throws(ConsoleError) -> ForgetResult {
        try principal.require(.admin, for: "forgetting a device")
        guard let address = try? DeviceAddress(site: site, device: device) else {
            throw .badRequest("\"\(site)/\(device)\" is not a site/device address: expected two ids of 1-63 of a-z, 0-9, '_' and '-', e.g. clinic-north/massager-07")
        }
        guard principal.canSee(site: site) else { throw .forbidden("token '\(principal.name)' may not act on site \"\(site)\"") }
        if let reason, reason.count > ForgetRequest.maxReason {
            throw .badRequest("reason: expected at most \(ForgetRequest.maxReason) characters, got \(reason.count)")
        }
        let now = context.clock.now()
        let result: ForgetResult
        do {
            // Through the commit gate: no batch taken before this runs commits after it.
            result = try await commitGate.run { () async throws -> ForgetResult in
                let (before, wasKnown) = state.model.withLock { m in
                    (m.devices[address] ?? DeviceRecord(site: site, device: device), m.devices[address] != nil)
                }
                let tombstone = before.forgotten(at: now, revoked: true)
                let counts = try await store.forgetDevice(address, record: tombstone, writer: context.configuration.instance, at: now)
                // Stored: now the model, and whatever ingest gathered of the device meanwhile.
                state.model.withLock { m in
                    // (Its desired config as the model has it now: a rollout may have written one since.)
                    m.forget(address, tombstone: (m.devices[address] ?? before).forgotten(at: now, revoked: true))
                    state.pending.withLock { b in
                        b.events.removeAll { $0.0 == address }
                        b.usage[address] = nil
                        b.devices[address] = nil
                        b.dirtyDevices.insert(address) // the row again, as the model has it
                    }
                }
                return ForgetResult(site: site, device: device, state: .revoked, forgottenAt: now, wasKnown: wasKnown,
                                    eventsDeleted: counts.events, alertsCleared: counts.alerts, usageBaselineReset: counts.usageBaselineReset)
            }
        } catch {
            await audit.record(principal, "device.forget", targets: address.description, outcome: "failed", detail: "\(error)")
            throw .unavailable("device \(address) was not forgotten (nothing changed): the store failed: \(error)")
        }
        let detail = "revoked; \(result.eventsDeleted) events deleted, \(result.alertsCleared) alerts cleared"
            + (result.usageBaselineReset ? ", usage baseline reset" : "") + (result.wasKnown ? "" : "; the console had no record of it")
            + (reason.map { "; reason: \($0)" } ?? "")
        await audit.record(principal, "device.forget", targets: address.description, outcome: "ok", detail: detail)
        context.logger.notice("device forgotten: shown as revoked until it is heard from live", metadata: [
            "device": "\(address)", "by": "\(principal.name)", "events.deleted": "\(result.eventsDeleted)"])
        return result
    }
}
