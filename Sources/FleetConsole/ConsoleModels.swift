import FleetProtocol
import Foundation

// The console's API shapes (JSON under /api/v1, snake_case keys). The names
// DESIGN.md §3 fixes — devices[].site/device/online/session/health,
// commands' id/action/results[].state — are kept; docs/api.md has the rest.

/// Who is asking, from a bearer token: a role and, optionally, the sites it may see.
public struct Principal: Sendable, Equatable {
    public enum Role: String, Sendable, Codable, Comparable, CaseIterable {
        case viewer, `operator`, admin
        var rank: Int { self == .viewer ? 0 : self == .operator ? 1 : 2 }
        public static func < (a: Role, b: Role) -> Bool { a.rank < b.rank }
    }

    public var name: String
    public var role: Role
    /// nil: every site.
    public var sites: Set<String>?

    public init(name: String, role: Role, sites: Set<String>? = nil) {
        self.name = name
        self.role = role
        self.sites = sites
    }

    public func canSee(site: String) -> Bool { sites?.contains(site) ?? true }
}

public struct SiteSummary: Codable, Sendable, Equatable {
    public var site: String
    public var name: String
    public var timezone: String
    public var devices: Int
    public var online: Int
    public var inSession: Int
    public var idle: Int
    public var offline: Int
    public var faulted: Int
    public var revoked: Int
    public var activeAlerts: Int
    public var sessionsToday: Int
    /// Share of online devices in a session right now (0–1).
    public var utilisation: Double

    enum CodingKeys: String, CodingKey {
        case site, name, timezone, devices, online
        case inSession = "in_session", idle, offline, faulted, revoked
        case activeAlerts = "active_alerts", sessionsToday = "sessions_today", utilisation
    }
}

/// The session a device runs now.
public struct SessionNow: Codable, Sendable, Equatable {
    public var sessionID: String
    public var program: String?
    public var startedAt: Date?
    public var state: String

    enum CodingKeys: String, CodingKey {
        case sessionID = "session_id", program, startedAt = "started_at", state
    }
}

public struct ConfigVersions: Codable, Sendable, Equatable {
    public var desired: UInt64?
    public var reported: UInt64?
    public var state: String?
    public var error: String?
}

public enum DeviceState: String, Codable, Sendable, CaseIterable {
    case inSession = "in_session", idle, offline, faulted
    /// Forgotten by an admin (`POST …/forget`) and not heard from live since:
    /// its retained status is not trusted (issue 20, item 18).
    case revoked
}

public enum Health: String, Codable, Sendable, Comparable {
    case ok, warning, critical
    var rank: Int { self == .ok ? 0 : self == .warning ? 1 : 2 }
    public static func < (a: Health, b: Health) -> Bool { a.rank < b.rank }
}

public struct DeviceSummary: Codable, Sendable, Equatable {
    public var site: String
    public var device: String
    public var online: Bool
    public var state: DeviceState
    public var session: SessionNow?
    public var health: Health
    public var alerts: [String]
    public var epoch: UInt64?
    public var lastSeen: Date?
    public var agentVersion: String?
    public var config: ConfigVersions
    /// When an admin last forgot the device (nil: never).
    public var forgottenAt: Date? = nil
    /// Set while the device is `revoked`: when it was forgotten.
    public var revokedAt: Date? = nil

    enum CodingKeys: String, CodingKey {
        case site, device, online, state, session, health, alerts, epoch
        case lastSeen = "last_seen", agentVersion = "agent_version", config
        case forgottenAt = "forgotten_at", revokedAt = "revoked_at"
    }
}

public struct SessionRecord: Codable, Sendable, Equatable {
    public var sessionID: String
    public var site: String
    public var device: String
    public var program: String?
    public var startedAt: Date?
    public var endedAt: Date?
    /// running, completed, aborted, missed
    public var outcome: String
    public var reason: String?

    enum CodingKeys: String, CodingKey {
        case sessionID = "session_id", site, device, program
        case startedAt = "started_at", endedAt = "ended_at", outcome, reason
    }
}

public struct DeviceDetail: Codable, Sendable, Equatable {
    public var summary: DeviceSummary
    public var programs: [String]
    public var telemetry: Telemetry?
    public var telemetryAt: Date?
    public var recentSessions: [SessionRecord]
    public var alerts: [AlertRecord]
    public var usage: Usage?
    public var desiredConfig: DesiredConfig?
    public var reportedConfig: ReportedConfig?

    enum CodingKeys: String, CodingKey {
        case summary = "device", programs, telemetry, telemetryAt = "telemetry_at"
        case recentSessions = "recent_sessions", alerts, usage
        case desiredConfig = "desired_config", reportedConfig = "reported_config"
    }
}

public struct AlertRecord: Codable, Sendable, Equatable {
    public var id: Int64
    public var site: String
    /// nil for site-wide alerts (e.g. repeated pain signals of a program).
    public var device: String?
    public var type: String
    public var severity: Health
    public var message: String
    public var raisedAt: Date
    public var clearedAt: Date?
    public var acknowledgedBy: String?
    public var acknowledgedAt: Date?

    enum CodingKeys: String, CodingKey {
        case id, site, device, type, severity, message
        case raisedAt = "raised_at", clearedAt = "cleared_at"
        case acknowledgedBy = "acknowledged_by", acknowledgedAt = "acknowledged_at"
    }

    public var isActive: Bool { clearedAt == nil }
}

/// `POST /api/v1/devices/{site}/{device}/forget` (admin); the body is optional.
public struct ForgetRequest: Codable, Sendable, Equatable {
    /// Why (for the audit log), at most `maxReason` characters.
    public var reason: String?
    public static let maxReason = 500
    public init(reason: String? = nil) { self.reason = reason }
}

/// What forgetting a device did (docs/api.md, "Forgetting a device").
public struct ForgetResult: Codable, Sendable, Equatable {
    public var site: String
    public var device: String
    /// `revoked` until the device is heard from live again.
    public var state: DeviceState
    public var forgottenAt: Date
    /// Whether the console held a record of the device.
    public var wasKnown: Bool
    /// Its events deleted from the event table (their (epoch, seq) numbering
    /// is what a re-provisioned device starts again).
    public var eventsDeleted: Int
    /// Its alerts that were active, now cleared (kept in the history).
    public var alertsCleared: Int
    /// Whether it had a usage baseline (reset; its total stays in the site's totals).
    public var usageBaselineReset: Bool

    enum CodingKeys: String, CodingKey {
        case site, device, state, forgottenAt = "forgotten_at", wasKnown = "was_known"
        case eventsDeleted = "events_deleted", alertsCleared = "alerts_cleared", usageBaselineReset = "usage_baseline_reset"
    }
}

/// `POST /api/v1/commands`.
public struct CommandSubmission: Codable, Sendable, Equatable {
    public struct Targets: Codable, Sendable, Equatable {
        public var site: String?
        /// Device ids within `site`, or "site/device" addresses.
        public var devices: [String]?
        /// Only devices that are online and not in a session.
        public var idleOnly: Bool?

        enum CodingKeys: String, CodingKey { case site, devices, idleOnly = "idle_only" }

        public init(site: String? = nil, devices: [String]? = nil, idleOnly: Bool? = nil) {
            self.site = site
            self.devices = devices
            self.idleOnly = idleOnly
        }
    }

    public var action: String
    public var params: JSONValue?
    public var targets: Targets
    /// How long the command stays valid (default 60 s): a device that comes back later doesn't run it.
    public var ttlSeconds: Double?

    enum CodingKeys: String, CodingKey { case action, params, targets, ttlSeconds = "ttl_s" }

    public init(action: String, params: JSONValue? = nil, targets: Targets, ttlSeconds: Double? = nil) {
        self.action = action
        self.params = params
        self.targets = targets
        self.ttlSeconds = ttlSeconds
    }
}

public enum CommandState: String, Codable, Sendable, CaseIterable {
    case queued, sent, succeeded, failed
    case timedOut = "timed_out"
    case expired

    public var isFinal: Bool { ![.queued, .sent].contains(self) }
}

public struct CommandTargetResult: Codable, Sendable, Equatable {
    public var site: String
    public var device: String
    public var state: CommandState
    public var error: ProtocolError?
    public var result: JSONValue?
    public var updatedAt: Date?
    /// A random value only this device's copy of the command carries in its
    /// correlation data, so a device cannot forge another target's reply.
    /// Persisted with the record; never shown by the API.
    var nonce: String?

    enum CodingKeys: String, CodingKey { case site, device, state, error, result, updatedAt = "updated_at", nonce }
}

public struct CommandRecord: Codable, Sendable, Equatable {
    public var id: String
    public var action: String
    public var params: JSONValue
    public var createdBy: String
    public var createdAt: Date
    public var expiresAt: Date
    public var results: [CommandTargetResult]

    enum CodingKeys: String, CodingKey {
        case id, action, params, createdBy = "created_by", createdAt = "created_at", expiresAt = "expires_at", results
    }

    public var isFinished: Bool { results.allSatisfy { $0.state.isFinal } }
}

public struct AuditEntry: Codable, Sendable, Equatable {
    public var id: Int64
    public var at: Date
    public var actor: String
    public var action: String
    public var targets: String
    public var outcome: String
    public var detail: String?
}

/// `GET /api/v1/usage?site=&from=&to=`: per site and day (in the site's time zone).
public struct UsageDay: Codable, Sendable, Equatable {
    public var site: String
    public var day: String
    public var sessions: SessionCounts
    /// Minutes by zone, point, technique and program.
    public var minutes: [String: [String: Double]]
}

public struct UsageReport: Codable, Sendable, Equatable {
    public var days: [UsageDay]
    /// Cumulative per site, equal to the sum of the devices' ledgers.
    public var totals: [String: Usage]
}
