import FleetProtocol
import Foundation

/// How much one device may send the console (`ingest:` in the console's
/// configuration; docs/operations.md, "Quotas and retention"). A device over
/// its quota has its messages dropped before they reach the model or the
/// database, counted (`fleet_ingest_quota_dropped_total`, the device's
/// `quota_drops`) and alerted (`quota_exceeded`); every other device's
/// messages go on as before. A dropped event is a gap like any other: the
/// console asks the device for it again (`resync`) once its quota allows.
public struct DeviceQuota: Sendable, Equatable {
    /// Sustained messages per second (`ingest.device_messages_per_s`).
    public var messagesPerSecond: Double = 20
    /// Sustained payload bytes per second (`ingest.device_bytes_per_s`).
    public var bytesPerSecond: Double = 16 * 1024
    /// Messages a device may send at once after a quiet time
    /// (`ingest.device_burst_messages`). Above the agent's outbox (10,000
    /// messages by default), so a massager that was offline for a long time
    /// delivers its whole backlog when it returns.
    public var burstMessages: Double = 12_000
    /// Bytes at once (`ingest.device_burst_bytes`): above the agent's outbox
    /// (16 MiB by default), for the same reason.
    public var burstBytes: Double = 20 * 1024 * 1024
    public init() {}
}

/// A token bucket: holds up to `capacity`, refills at `rate` per second.
/// Pure: it reads no clock but the `now` it is given.
struct TokenBucket: Sendable, Equatable {
    private(set) var tokens: Double
    private(set) var updated: Date

    init(capacity: Double, now: Date) {
        tokens = capacity
        updated = now
    }

    /// Refills for the time since the last call (none if the clock went
    /// back), then takes `amount` if the bucket holds it.
    mutating func take(_ amount: Double, rate: Double, capacity: Double, now: Date) -> Bool {
        let elapsed = max(0, now.timeIntervalSince(updated))
        tokens = min(capacity, tokens + elapsed * rate)
        updated = max(updated, now)
        guard tokens >= amount else { return false }
        tokens -= amount
        return true
    }
}

/// Every device's two buckets (messages, bytes). Lives in the fleet model;
/// not persisted: a console that restarts gives every device a full bucket.
/// Keyed by the address in the topic, which the broker's ACL ties to the
/// device's own credentials, so a device can only spend its own quota.
struct IngestQuotas: Sendable {
    private var buckets: [DeviceAddress: (messages: TokenBucket, bytes: TokenBucket)] = [:]

    /// Whether a message of `bytes` from `address` is within its quota; it is
    /// taken from both buckets only when both hold enough.
    mutating func admit(_ address: DeviceAddress, bytes: Int, quota: DeviceQuota, now: Date) -> Bool {
        var b = buckets[address] ?? (TokenBucket(capacity: quota.burstMessages, now: now), TokenBucket(capacity: quota.burstBytes, now: now))
        defer { buckets[address] = b }
        var messages = b.messages, data = b.bytes
        guard messages.take(1, rate: quota.messagesPerSecond, capacity: quota.burstMessages, now: now),
              data.take(Double(bytes), rate: quota.bytesPerSecond, capacity: quota.burstBytes, now: now)
        else {
            // Refilled, nothing taken: neither bucket pays for a refused message.
            b.messages.refill(rate: quota.messagesPerSecond, capacity: quota.burstMessages, now: now)
            b.bytes.refill(rate: quota.bytesPerSecond, capacity: quota.burstBytes, now: now)
            return false
        }
        b = (messages, data)
        return true
    }

    /// Forgets a device's buckets (the device was forgotten).
    mutating func remove(_ address: DeviceAddress) { buckets[address] = nil }
}

extension TokenBucket {
    /// Refills for the time since the last call without taking anything.
    mutating func refill(rate: Double, capacity: Double, now: Date) {
        _ = take(0, rate: rate, capacity: capacity, now: now)
    }
}
