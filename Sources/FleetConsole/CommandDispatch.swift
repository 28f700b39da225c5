import FleetProtocol
import Foundation

/// What can happen to one device's copy of a command. The dispatcher's state
/// machine (`CommandTargetResult.apply`) is pure: CommandService
/// decides which transition an event is, applies it under the commands'
/// lock, and persists and audits what changed.
///
///     queued ──claim──▶ sent ──reply──▶ succeeded | failed
///       │  ◀─sendFailed─┘ │
///       ├─expire─▶ expired └─timeOut─▶ timed_out ──reply──▶ succeeded | failed
///       └─undecodable─▶ failed
enum CommandTransition: Sendable, Equatable {
    /// One of the paths that dispatch (a submit, a device back online, a new
    /// coordinator) takes the copy to send it: only one of them does.
    case claim
    /// The publish failed: queued again, sent at the next chance.
    case sendFailed
    /// Not reachable before `expires_at`.
    case expire
    /// The stored command no longer decodes (a console of another version wrote it).
    case undecodable
    /// Sent, and no reply within `seconds`.
    case timeOut(seconds: Double)
    /// The device's reply; one that comes after a time-out still counts.
    case reply(CommandReply.Outcome)
}

extension CommandTargetResult {
    /// Applies `transition` when the copy's state allows it, stamped `now`;
    /// returns whether it did (a transition the state does not allow changes nothing).
    @discardableResult
    mutating func apply(_ transition: CommandTransition, at now: Date) -> Bool {
        switch (transition, state) {
        case (.claim, .queued):
            state = .sent
        case (.sendFailed, .sent):
            state = .queued
        case (.expire, .queued):
            state = .expired
            error = ProtocolError(code: .expired, message: "the device was not reachable before the command expired")
        case (.undecodable, .queued):
            state = .failed
            error = .internal("the stored command no longer decodes")
        case (.timeOut(let seconds), .sent):
            state = .timedOut
            error = ProtocolError(code: ErrorCode(rawValue: "timeout"), message: "no reply from the device within \(Int(seconds)) s")
        case (.reply(.success(let value)), let s) where !s.isFinal || s == .timedOut:
            state = .succeeded
            result = value
            error = nil
        case (.reply(.failure(let failure)), let s) where !s.isFinal || s == .timedOut:
            state = .failed
            error = failure
        default:
            return false
        }
        updatedAt = now
        return true
    }
}

extension CommandRecord {
    /// The copies the sweep finishes at `now`: queued past `expires_at`
    /// expire; sent with no reply for `timeout` seconds time out.
    func sweep(now: Date, timeout: Double) -> [(DeviceAddress, CommandTransition)] {
        results.compactMap { r in
            guard let a = try? DeviceAddress(site: r.site, device: r.device) else { return nil }
            if r.state == .queued, now >= expiresAt { return (a, .expire) }
            if r.state == .sent, let at = r.updatedAt, now.timeIntervalSince(at) >= timeout { return (a, .timeOut(seconds: timeout)) }
            return nil
        }
    }
}

/// The correlation data of a command the console sent: `id`, the device's
/// address and the copy's nonce, one per line (resync requests carry no nonce).
struct ReplyCorrelation: Equatable {
    var commandID: String
    var address: DeviceAddress
    var nonce: String

    init(commandID: String, address: DeviceAddress, nonce: String) {
        (self.commandID, self.address, self.nonce) = (commandID, address, nonce)
    }

    /// Reads correlation data from a reply; nil when it is not one of ours.
    init?(_ bytes: [UInt8]) {
        guard let text = String(bytes: bytes, encoding: .utf8) else { return nil }
        let parts = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let ids = parts.count >= 2 ? parts[1].split(separator: "/", omittingEmptySubsequences: false) : []
        guard ids.count == 2, let address = try? DeviceAddress(site: String(ids[0]), device: String(ids[1])) else { return nil }
        self.init(commandID: parts[0], address: address, nonce: parts.count >= 3 ? parts[2] : "")
    }

    var bytes: [UInt8] { Array("\(commandID)\n\(address)\n\(nonce)".utf8) }
}
