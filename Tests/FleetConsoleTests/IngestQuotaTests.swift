@testable import FleetConsole
import FleetProtocol
import Foundation
import Testing

/// Issue 20, item 5: each device's ingest quota, on a manual clock.
@Suite("Ingest quotas per device")
struct IngestQuotaTests {
    static let a = try! DeviceAddress(site: "lab", device: "flooder")
    static let b = try! DeviceAddress(site: "lab", device: "honest")
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    static var quota: DeviceQuota {
        var q = DeviceQuota()
        q.messagesPerSecond = 2
        q.burstMessages = 10
        q.bytesPerSecond = 1000
        q.burstBytes = 5000
        return q
    }

    /// How many of `count` messages of `bytes` from `address` at `now` are admitted.
    static func admitted(_ quotas: inout IngestQuotas, _ address: DeviceAddress = a, count: Int = 1, bytes: Int = 10, at now: Date) -> Int {
        var n = 0
        for _ in 0..<count where quotas.admit(address, bytes: bytes, quota: quota, now: now) { n += 1 }
        return n
    }

    @Test("a burst up to the bucket passes; then the sustained rate, refilled by time; another device's quota is its own")
    func messages() {
        var quotas = IngestQuotas()
        let burst = Self.admitted(&quotas, count: 25, at: Self.t0)
        #expect(burst == 10)
        let other = Self.admitted(&quotas, Self.b, at: Self.t0)
        #expect(other == 1, "the honest device is not charged for the flooder")
        // 1.5 s later: 3 more messages' worth.
        let refilled = Self.admitted(&quotas, count: 10, at: Self.t0.addingTimeInterval(1.5))
        #expect(refilled == 3)
        // A long quiet refills to the burst, not beyond it.
        let afterQuiet = Self.admitted(&quotas, count: 25, at: Self.t0.addingTimeInterval(3600))
        #expect(afterQuiet == 10)
    }

    @Test("bytes have their own bucket; a refused message costs neither bucket; a clock that goes back refills nothing")
    func bytes() {
        var quotas = IngestQuotas()
        let results = [
            Self.admitted(&quotas, bytes: 4000, at: Self.t0),  // 1,000 bytes left
            Self.admitted(&quotas, bytes: 2000, at: Self.t0),  // refused
            Self.admitted(&quotas, bytes: 1000, at: Self.t0),  // the refused one took nothing
            Self.admitted(&quotas, bytes: 1, at: Self.t0.addingTimeInterval(-60)),  // no refill backwards
            Self.admitted(&quotas, bytes: 900, at: Self.t0.addingTimeInterval(1)),  // 1 s: 1,000 bytes
        ]
        #expect(results == [1, 0, 1, 0, 1])
    }

    @Test("the ingest settings are read from the configuration, and a bad one names its key")
    func configuration() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("quota-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("console.yaml")
        try "broker: {host: localhost, allow_plaintext: true}\ningest: {device_messages_per_s: 5, device_bytes_per_s: 2048, device_burst_messages: 500, device_burst_bytes: 1048576}\n"
            .write(to: file, atomically: true, encoding: .utf8)
        let c = try ConsoleConfiguration.load(file: file)
        #expect(c.deviceQuota.messagesPerSecond == 5 && c.deviceQuota.bytesPerSecond == 2048)
        #expect(c.deviceQuota.burstMessages == 500 && c.deviceQuota.burstBytes == 1_048_576)
        try "broker: {host: localhost, allow_plaintext: true}\ningest: {device_messages_per_s: 0, device_burst: 3}\n".write(to: file, atomically: true, encoding: .utf8)
        do {
            _ = try ConsoleConfiguration.load(file: file)
            Issue.record("a zero rate and an unknown key were accepted")
        } catch {
            let keys = error.problems.map(\.key)
            #expect(keys.contains("ingest.device_messages_per_s") && keys.contains("ingest.device_burst"), "\(error)")
        }
    }
}
