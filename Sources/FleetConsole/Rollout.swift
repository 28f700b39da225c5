import FleetProtocol
import Foundation
import MassageEngine
import Yams

public enum RolloutState: String, Codable, Sendable {
    case running, waitingWindow = "waiting_window", paused, completed, aborted
    var isActive: Bool { self == .running || self == .waitingWindow || self == .paused }
}

public enum RolloutDeviceState: String, Codable, Sendable, CaseIterable {
    case pending, applying, deferred, verifying, succeeded, failed
    case timedOut = "timed_out", offline
    case rolledBack = "rolled_back"

    var isFailure: Bool { self == .failed || self == .timedOut }
    var isExecuted: Bool { self == .succeeded || isFailure }
}

public struct RolloutDevice: Codable, Sendable, Equatable {
    public var site: String
    public var device: String
    public var wave: Int
    public var state: RolloutDeviceState
    public var version: UInt64?
    public var error: String?
    /// When the current state began.
    public var since: Date?
    /// The desired config before this rollout (restored on abort; empty
    /// when the device had none).
    var previous: DeviceConfig?
    /// When its desired config was last published (see `RolloutRunner.rewriteAfter`).
    var writtenAt: Date?

    enum CodingKeys: String, CodingKey { case site, device, wave, state, version, error, since, previous, writtenAt = "written_at" }

    var address: DeviceAddress? { try? DeviceAddress(site: site, device: device) }
}

public struct RolloutWave: Codable, Sendable, Equatable {
    public var index: Int
    public var size: Int
    /// pending, running, baking, done
    public var state: String
    public var startedAt: Date?
    public var finishedAt: Date?

    enum CodingKeys: String, CodingKey { case index, size, state, startedAt = "started_at", finishedAt = "finished_at" }
}

public struct Rollout: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var state: RolloutState
    public var reason: String?
    public var createdAt: Date
    public var createdBy: String
    public var currentWave: Int
    public var waves: [RolloutWave]
    public var devices: [RolloutDevice]
    public var document: RolloutDocument
    /// Set only in what a site-limited token is shown (`visible(to:)`): the
    /// rollout also has devices at sites it may not see, which were left out
    /// of `devices`, `counts`, the waves' sizes and the document's targets.
    /// Never stored.
    public var partial = false

    enum CodingKeys: String, CodingKey {
        case id, name, state, reason, createdAt = "created_at", createdBy = "created_by"
        case currentWave = "current_wave", waves, devices, counts, document, partial
    }

    public var counts: [String: Int] { Dictionary(grouping: devices, by: \.state.rawValue).mapValues(\.count) }

    public init(id: String, document: RolloutDocument, targets: [DeviceAddress], createdBy: String, now: Date) {
        self.id = id
        name = document.name
        state = .running
        createdAt = now
        self.createdBy = createdBy
        currentWave = 0
        self.document = document
        let sizes = document.waveSizes(count: targets.count)
        waves = sizes.enumerated().map { RolloutWave(index: $0.offset, size: $0.element, state: "pending") }
        var devices: [RolloutDevice] = []
        var i = 0
        for (wave, size) in sizes.enumerated() {
            for _ in 0..<size {
                devices.append(RolloutDevice(site: targets[i].site.rawValue, device: targets[i].device.rawValue, wave: wave, state: .pending))
                i += 1
            }
        }
        self.devices = devices
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        name = try c.decode(String.self, forKey: .name)
        state = try c.decode(RolloutState.self, forKey: .state)
        reason = try c.decodeIfPresent(String.self, forKey: .reason)
        createdAt = try c.decode(Date.self, forKey: .createdAt)
        createdBy = try c.decode(String.self, forKey: .createdBy)
        currentWave = try c.decode(Int.self, forKey: .currentWave)
        waves = try c.decode([RolloutWave].self, forKey: .waves)
        devices = try c.decode([RolloutDevice].self, forKey: .devices)
        document = try c.decode(RolloutDocument.self, forKey: .document)
        partial = try c.decodeIfPresent(Bool.self, forKey: .partial) ?? false
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(name, forKey: .name)
        try c.encode(state, forKey: .state)
        try c.encodeIfPresent(reason, forKey: .reason)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(createdBy, forKey: .createdBy)
        try c.encode(currentWave, forKey: .currentWave)
        try c.encode(waves, forKey: .waves)
        try c.encode(devices, forKey: .devices)
        try c.encode(counts, forKey: .counts)
        try c.encode(document, forKey: .document)
        if partial { try c.encode(partial, forKey: .partial) }
    }
}

extension Rollout {
    /// Still able to change: running, waiting or paused, or with devices
    /// whose outcome is not known yet. The rollout loop steps these; the
    /// store keeps them flagged `active`.
    var canChange: Bool {
        state.isActive || devices.contains { [.offline, .applying, .deferred, .verifying].contains($0.state) }
    }
}
