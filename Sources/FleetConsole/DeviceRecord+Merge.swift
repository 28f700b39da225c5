import FleetProtocol
import Foundation

extension DeviceRecord {
    /// Folds in what another replica knows of this device (its row in the
    /// shared database). Replicas split telemetry and events between them
    /// (`$share/console/…`), so each holds the freshest of some facets; each
    /// facet is taken from whichever record is newer by its own clock — the
    /// (epoch, seq) of the retained topics, the telemetry's arrival, the
    /// highest event — never by which replica wrote last. Merging is
    /// idempotent and order-independent, so rows read twice do no harm.
    /// Both records must be of one life of the id (the same `forgottenAt`;
    /// `FleetModel.adopt` sees to it).
    mutating func merge(_ other: DeviceRecord) {
        // Revoked, then readmitted by a live message another replica received:
        // readmission is the later of the two within one life.
        if revokedAt != nil, other.revokedAt == nil, other.forgottenAt != nil, other.forgottenAt == forgottenAt {
            revokedAt = nil
        }
        // Presence: every replica reads the retained status itself; the newer (epoch, seq) wins.
        if Self.isNewer(other.lastStatus, than: lastStatus) {
            online = other.online
            offlineReason = other.offlineReason
            epoch = other.epoch
            onlineChangedAt = other.onlineChangedAt
            agentVersion = other.agentVersion
            programs = other.programs
            lastStatus = other.lastStatus
        }
        // Telemetry (and the session it shows): the later arrival wins.
        if let theirs = other.telemetryAt, theirs > (telemetryAt ?? .distantPast) {
            telemetry = other.telemetry
            telemetryAt = theirs
            lastTelemetrySeq = other.lastTelemetrySeq
            session = other.session
            // Not `online`: every replica sees the status topic (and the will) itself.
        }
        telemetryGaps = max(telemetryGaps, other.telemetryGaps)
        if let theirs = other.lastSeen, theirs > (lastSeen ?? .distantPast) { lastSeen = theirs }
        if Self.isNewer(other.lastUsage, than: lastUsage) {
            usage = other.usage
            lastUsage = other.lastUsage
        }
        if Self.isNewer(other.lastReported, than: lastReported) {
            reported = other.reported
            lastReported = other.lastReported
        }
        if let theirs = other.desired, theirs.version > (desired?.version ?? 0) {
            desired = theirs
            desiredSince = other.desiredSince
        }
        let mine = [lastEventEpoch ?? 0, lastEventSeq ?? 0]
        if other.lastEventEpoch != nil, Self.isNewer([other.lastEventEpoch ?? 0, other.lastEventSeq ?? 0], than: mine) {
            lastEventEpoch = other.lastEventEpoch
            lastEventSeq = other.lastEventSeq
        }
        if let theirs = other.lastResyncRequest, theirs > (lastResyncRequest ?? .distantPast) { lastResyncRequest = theirs }
        if let theirs = other.sequenceFaultAt, theirs > (sequenceFaultAt ?? .distantPast) {
            sequenceFaultAt = theirs
            sequenceFaultDetail = other.sequenceFaultDetail
        }
        if let theirs = other.sequenceFaults { sequenceFaults = max(sequenceFaults ?? 0, theirs) }
        if let theirs = other.quotaExceededAt, theirs > (quotaExceededAt ?? .distantPast) { quotaExceededAt = theirs }
        if let theirs = other.quotaDrops { quotaDrops = max(quotaDrops ?? 0, theirs) }
        if let theirs = other.epochResyncAsked { epochResyncAsked = max(epochResyncAsked ?? 0, theirs) }
        if let theirs = other.outboxDropsGrewAt, theirs > (outboxDropsGrewAt ?? .distantPast) { outboxDropsGrewAt = theirs }
    }

    /// `[epoch, seq]` pairs: is `a` strictly newer than `b` (nil is oldest)?
    static func isNewer(_ a: [UInt64]?, than b: [UInt64]?) -> Bool {
        guard let a, a.count == 2 else { return false }
        guard let b, b.count == 2 else { return true }
        return a[0] > b[0] || (a[0] == b[0] && a[1] > b[1])
    }
}
