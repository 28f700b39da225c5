@testable import FleetConsole
import FleetProtocol
import Foundation
import Testing

/// The command dispatcher's state machine and its sweep, pure (issue 22,
/// item 1): every transition from every state, on a manual clock.
@Suite("Command dispatch: the state machine of one device's copy")
struct CommandDispatchTests {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    static let states: [CommandState] = [.queued, .sent, .succeeded, .failed, .expired, .timedOut]

    static func copy(_ state: CommandState) -> CommandTargetResult {
        CommandTargetResult(site: "clinic-north", device: "m-1", state: state, nonce: "n1")
    }

    /// The state `transition` leads to from each state (nil: not allowed, nothing changes).
    static func table(_ transition: CommandTransition) -> [CommandState: CommandState?] {
        Dictionary(uniqueKeysWithValues: states.map { from in
            var c = copy(from)
            let before = c
            let applied = c.apply(transition, at: t0)
            if !applied { #expect(c == before, "a refused transition changes nothing") }
            return (from, applied ? c.state : nil)
        })
    }

    @Test("each transition applies only from the states it names; final states stay final, except that a late reply finishes a timed-out copy")
    func transitions() {
        #expect(Self.table(.claim) == [.queued: .sent, .sent: nil, .succeeded: nil, .failed: nil, .expired: nil, .timedOut: nil])
        #expect(Self.table(.sendFailed) == [.queued: nil, .sent: .queued, .succeeded: nil, .failed: nil, .expired: nil, .timedOut: nil])
        #expect(Self.table(.expire) == [.queued: .expired, .sent: nil, .succeeded: nil, .failed: nil, .expired: nil, .timedOut: nil])
        #expect(Self.table(.undecodable) == [.queued: .failed, .sent: nil, .succeeded: nil, .failed: nil, .expired: nil, .timedOut: nil])
        #expect(Self.table(.timeOut(seconds: 30)) == [.queued: nil, .sent: .timedOut, .succeeded: nil, .failed: nil, .expired: nil, .timedOut: nil])
        #expect(Self.table(.reply(.success(.object([:])))) == [.queued: .succeeded, .sent: .succeeded, .succeeded: nil, .failed: nil, .expired: nil, .timedOut: .succeeded])
        #expect(Self.table(.reply(.failure(.busy("a session is running")))) == [.queued: .failed, .sent: .failed, .succeeded: nil, .failed: nil, .expired: nil, .timedOut: .failed])
    }

    @Test("what a transition records: the error, the result, the time")
    func recorded() {
        var c = Self.copy(.sent)
        c.apply(.timeOut(seconds: 30), at: Self.t0)
        #expect(c.error?.code.rawValue == "timeout" && c.error?.message == "no reply from the device within 30 s" && c.updatedAt == Self.t0)
        c.apply(.reply(.success(.object(["session_id": .string("s-1")]))), at: Self.t0.addingTimeInterval(40))
        #expect(c.state == .succeeded && c.error == nil && c.result == .object(["session_id": .string("s-1")]))
        var q = Self.copy(.queued)
        q.apply(.expire, at: Self.t0)
        #expect(q.error?.code == .expired && q.error?.message == "the device was not reachable before the command expired")
    }

    @Test("the sweep: queued copies expire at expires_at, sent ones time out after the timeout, nothing else moves")
    func sweep() throws {
        var record = CommandRecord(id: "c-1", action: "ping", params: .object([:]), createdBy: "desk", createdAt: Self.t0,
                                   expiresAt: Self.t0.addingTimeInterval(60),
                                   results: [Self.copy(.queued), CommandTargetResult(site: "clinic-north", device: "m-2", state: .sent, nonce: "n2"),
                                             CommandTargetResult(site: "clinic-north", device: "m-3", state: .succeeded, nonce: "n3")])
        record.results[1].updatedAt = Self.t0.addingTimeInterval(10)
        func swept(_ s: Double) -> [String] {
            record.sweep(now: Self.t0.addingTimeInterval(s), timeout: 30).map { "\($0.0.device)=\($0.1)" }.sorted()
        }
        #expect(swept(39.9).isEmpty)
        #expect(swept(40) == ["m-2=timeOut(seconds: 30.0)"])
        #expect(swept(60) == ["m-1=expire", "m-2=timeOut(seconds: 30.0)"])
    }

    @Test("correlation data: written and read back; anything else is not ours")
    func correlation() throws {
        let address = try DeviceAddress(site: "clinic-north", device: "m-1")
        let c = ReplyCorrelation(commandID: "c-1", address: address, nonce: "abc")
        #expect(ReplyCorrelation(c.bytes) == c)
        #expect(ReplyCorrelation(Array("resync-1\nclinic-north/m-1".utf8))?.nonce == "", "a resync carries no nonce")
        for bad in ["c-1", "c-1\nclinic-north", "c-1\nclinic-north/m-1/x\nn", "c-1\nClinic/M 1\nn", "\u{FFFF}"] {
            #expect(ReplyCorrelation(Array(bad.utf8)) == nil, "\(bad)")
        }
        #expect(ReplyCorrelation([0xFF, 0xFE]) == nil)
    }
}
