import Crypto
import FleetProtocol
import FleetSettings
import Foundation
import Logging
import MassageEngine
import Yams

/// An API token as configured: only its SHA-256 is stored.
public struct TokenEntry: Sendable, Equatable {
    public var name: String
    public var sha256: [UInt8]
    public var role: Principal.Role
    public var sites: Set<String>?

    public init(name: String, sha256: [UInt8], role: Principal.Role, sites: Set<String>? = nil) {
        self.name = name
        self.sha256 = sha256
        self.role = role
        self.sites = sites
    }

    /// `sites: ["*"]`: every site, said explicitly (a viewer or operator
    /// token without `sites` is refused at start-up).
    public static let everySite = "*"

    public static func hash(_ token: String) -> [UInt8] { Array(SHA256.hash(data: Data(token.utf8))) }
    public static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
}

/// How the dashboard marks its session cookie (`secure_cookies`).
public enum CookieSecurity: Sendable, Equatable {
    /// `false` (the default): `fc_session` without `Secure`, for a console
    /// reached over plain HTTP (a browser on the same machine).
    case off
    /// `true`: every response is served over TLS (a TLS proxy in front):
    /// `__Host-fc_session`, `Secure`.
    case always
    /// `forwarded`: `Secure` and `__Host-` for requests a proxy marked
    /// `X-Forwarded-Proto: https`, plain for the others. Only set it when
    /// the console is reachable through that proxy alone.
    case forwardedProto
}

public struct SiteConfiguration: Sendable, Equatable {
    public var id: String
    public var name: String
    public var timeZone: TimeZone
}

/// Health thresholds (docs/operations.md explains each).
public struct HealthThresholds: Sendable, Equatable {
    /// A device is stale after this many telemetry intervals without telemetry.
    public var staleFactor: Double = 3
    /// Desired ≠ reported config for longer than this raises `config_drift`.
    public var configDriftSeconds: Double = 300
    /// A condition must be gone this long before its alert clears (hysteresis).
    public var clearAfterSeconds: Double = 5
    /// `pain_signal` aborts of one program at one site within the window that raise a warning.
    public var painSignalCount: Int = 3
    public var painSignalWindowHours: Double = 24
    /// A sent command with no reply after this is `timed_out`.
    public var commandTimeoutSeconds: Double = 30
    /// The longest `ttl_s` of a command that starts a session
    /// (`start_session`, `schedule_session`): a start must not wait long for
    /// a massager that is offline (someone else may be seated when it returns).
    public var maxStartTTLSeconds: Double = 300
    /// At most one `resync` per device in this many seconds; a gap seen in
    /// between is asked for once the interval has passed.
    public var resyncIntervalSeconds: Double = 30
    /// `outbox_drops` is raised while a device's `usage.outbox_dropped` grew
    /// within this many seconds, and clears once it has not for this long.
    public var outboxDropWindowSeconds: Double = 3600
    /// `disk_space` is raised while the database's file system has less
    /// free space than this (MiB; SQLite, where the console can see it).
    public var diskFreeMinMiB: Double = 1024
    public init() {}
}
