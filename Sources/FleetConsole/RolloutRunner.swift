import FleetProtocol
import Foundation

/// What the runner needs to know of a device at a step.
struct RolloutObservation: Sendable {
    var online: Bool
    var desired: DesiredConfig?
    var reported: ReportedConfig?
    var telemetryAt: Date?
    var faults: [String]
    var timeZone: TimeZone
    /// When the console received `reported` (nil: not known).
    var reportedAt: Date? = nil

    /// Healthy since `since`: telemetry received after it, without a fault.
    func healthy(after since: Date) -> Bool {
        guard let t = telemetryAt else { return false }
        return t > since && faults.isEmpty
    }
}

enum RolloutAction: Sendable, Equatable {
    case writeDesired(DeviceAddress, DesiredConfig)
    case audit(String)
}

/// Advances a rollout: pure logic over the rollout, the observed devices and
/// `now`, so it is tested on a manual clock. The console calls `step` every
/// half second, and when a device of a rollout in flight reports a config or
/// sends telemetry, for active rollouts (and for completed ones whose offline
/// devices may still come back within the lifetime) and carries out the
/// returned actions.
enum RolloutRunner {
    /// A device still `applying` whose desired config the console does not
    /// see on the broker after this long is written again, with the same
    /// version: the publish was lost (a coordinator that died between
    /// recording the wave and publishing, or a broker outage).
    static let rewriteAfter: TimeInterval = 5

    static func step(_ r: inout Rollout, now: Date, observe: (DeviceAddress) -> RolloutObservation?) -> [RolloutAction] {
        var actions: [RolloutAction] = []
        let doc = r.document
        let timeout = doc.applyTimeoutSeconds ?? 1800
        let lifetime = (doc.lifetimeHours ?? 24) * 3600
        let alive = now.timeIntervalSince(r.createdAt) < lifetime

        func write(_ i: Int) {
            guard let address = r.devices[i].address, let o = observe(address) else { return }
            if r.devices[i].previous == nil { r.devices[i].previous = o.desired?.config ?? DeviceConfig() }
            // Reported versions come from the device: bounded at decoding, and `nextVersion` saturates.
            let version = max(o.desired?.version ?? 0, o.reported?.version ?? 0, o.reported?.appliedVersion ?? 0, r.devices[i].version ?? 0).nextVersion
            r.devices[i].version = version
            r.devices[i].state = .applying
            r.devices[i].since = now
            r.devices[i].writtenAt = now
            r.devices[i].error = nil
            actions.append(.writeDesired(address, DesiredConfig(version: version, config: doc.config)))
        }

        // 1. Observe devices already in flight (whatever the rollout state).
        for i in r.devices.indices {
            guard let address = r.devices[i].address, let o = observe(address) else { continue }
            let d = r.devices[i]
            let age = now.timeIntervalSince(d.since ?? now)
            switch d.state {
            case .applying, .deferred:
                if d.state == .applying, let version = d.version, (o.desired?.version ?? 0) < version,
                   now.timeIntervalSince(d.writtenAt ?? d.since ?? now) >= Self.rewriteAfter {
                    r.devices[i].writtenAt = now
                    actions.append(.writeDesired(address, DesiredConfig(version: version, config: doc.config)))
                }
                if let rep = o.reported, rep.version == d.version {
                    switch rep.state {
                    case .applied:
                        // Verifying from the report's arrival, not from this
                        // step: telemetry that came after the report already
                        // shows the device healthy on the new config.
                        let applied = min(o.reportedAt ?? now, now)
                        r.devices[i].state = .verifying
                        r.devices[i].since = applied
                        if o.healthy(after: applied) {
                            r.devices[i].state = .succeeded
                            r.devices[i].since = now
                        }
                    case .pending:
                        if d.state != .deferred { r.devices[i].state = .deferred }
                    case .rejected, .rolledBack:
                        r.devices[i].state = .failed
                        r.devices[i].error = "\(rep.state.rawValue): \(rep.error ?? rep.reasons?.joined(separator: "; ") ?? "no reason given")"
                        r.devices[i].since = now
                    }
                }
                if r.devices[i].state == .applying || r.devices[i].state == .deferred, age > timeout {
                    r.devices[i].state = .timedOut
                    r.devices[i].error = "no applied report within \(Int(timeout)) s"
                    r.devices[i].since = now
                }
            case .verifying:
                // Healthy: telemetry after the applied report, without a fault.
                if o.healthy(after: d.since ?? now) {
                    r.devices[i].state = .succeeded
                    r.devices[i].since = now
                } else if age > timeout {
                    r.devices[i].state = .timedOut
                    r.devices[i].error = o.faults.isEmpty ? "applied, but no healthy telemetry within \(Int(timeout)) s" : "applied, but reports \(o.faults.joined(separator: ", "))"
                    r.devices[i].since = now
                }
            case .offline:
                // Retried when it returns, within the rollout's lifetime.
                if o.online, alive, r.state != .aborted, r.state != .paused, doc.windowOpen(at: now, in: o.timeZone) { write(i) }
            default:
                break
            }
        }

        // 2. Thresholds, checked continuously.
        if r.state == .running || r.state == .waitingWindow, let t = doc.errorThreshold {
            let executed = r.devices.filter { $0.state.isExecuted }.count
            let failures = r.devices.filter { $0.state.isFailure }.count
            if executed >= t.minExecuted, Double(failures) * 100 >= t.percent * Double(executed) {
                let why = thresholdReason(failures: failures, executed: executed, threshold: t)
                if t.action == "abort" {
                    actions += abort(&r, reason: why, now: now)
                } else {
                    r.state = .paused
                    r.reason = why
                    actions.append(.audit("rollout \(r.id) paused: \(why)"))
                }
                return actions
            }
        }

        guard r.state == .running || r.state == .waitingWindow else { return actions }

        // 3. The current wave: start its devices, or finish it and bake.
        guard r.currentWave < r.waves.count else {
            return actions + finishIfDone(&r, now: now)
        }
        let w = r.currentWave
        switch r.waves[w].state {
        case "pending":
            r.waves[w].state = "running"
            r.waves[w].startedAt = now
            actions.append(.audit("rollout \(r.id) wave \(w) started (\(r.waves[w].size) devices)"))
            fallthrough
        case "running":
            var blockedByWindow = false
            for i in r.devices.indices where r.devices[i].wave == w && r.devices[i].state == .pending {
                guard let address = r.devices[i].address, let o = observe(address) else {
                    r.devices[i].state = .offline
                    r.devices[i].since = now
                    continue
                }
                guard doc.windowOpen(at: now, in: o.timeZone) else { blockedByWindow = true; continue }
                if o.online { write(i) } else {
                    r.devices[i].state = .offline
                    r.devices[i].since = now
                }
            }
            r.state = blockedByWindow ? .waitingWindow : .running
            let mine = r.devices.filter { $0.wave == w }
            let settled = mine.allSatisfy { d in
                d.state.isExecuted || (d.state == .offline && now.timeIntervalSince(d.since ?? now) > timeout)
            }
            if settled {
                r.waves[w].state = "baking"
                r.waves[w].finishedAt = now
                actions.append(.audit("rollout \(r.id) wave \(w) finished: \(Dictionary(grouping: mine, by: \.state.rawValue).mapValues(\.count).sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))"))
            }
        case "baking":
            if now.timeIntervalSince(r.waves[w].finishedAt ?? now) >= (doc.bakeSeconds ?? 0) {
                r.waves[w].state = "done"
                r.currentWave += 1
                if r.currentWave >= r.waves.count { actions += finishIfDone(&r, now: now) }
            }
        default:
            break
        }
        return actions
    }

    private static func finishIfDone(_ r: inout Rollout, now: Date) -> [RolloutAction] {
        guard r.state != .completed else { return [] }
        r.state = .completed
        r.reason = nil
        return [.audit("rollout \(r.id) completed: \(r.counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))")]
    }

    /// Why an error threshold paused or aborted a rollout. Its counts are over
    /// every device of the rollout, so a site-limited token is shown
    /// `scopedThresholdReason` instead (`Rollout.visible(to:)`).
    static func thresholdReason(failures: Int, executed: Int, threshold t: RolloutDocument.Threshold) -> String {
        "\(failures) of \(executed) \(thresholdMarker) (threshold \(t.percent)% with at least \(t.minExecuted) executed)"
    }

    static let thresholdMarker = "executed devices failed"

    static func scopedThresholdReason(_ t: RolloutDocument.Threshold) -> String {
        "the error threshold (\(t.percent)% with at least \(t.minExecuted) executed) was reached over the whole rollout, which also has devices at sites this token may not see"
    }

    /// Stops the rollout; with `on_abort: rollback` every device it wrote
    /// gets its previous desired config back under a new, higher version.
    static func abort(_ r: inout Rollout, reason: String, now: Date) -> [RolloutAction] {
        r.state = .aborted
        r.reason = reason
        var actions: [RolloutAction] = [.audit("rollout \(r.id) aborted: \(reason)")]
        guard (r.document.onAbort ?? "rollback") == "rollback" else { return actions }
        for i in r.devices.indices {
            let d = r.devices[i]
            guard let address = d.address, let version = d.version, let previous = d.previous,
                  [.applying, .deferred, .verifying, .succeeded, .failed, .timedOut].contains(d.state) else { continue }
            let back = DesiredConfig(version: version.nextVersion, config: previous)
            r.devices[i].version = version.nextVersion
            r.devices[i].state = .rolledBack
            r.devices[i].since = now
            actions.append(.writeDesired(address, back))
        }
        for w in r.waves.indices where r.waves[w].state != "done" { r.waves[w].state = r.waves[w].state == "pending" ? "pending" : "done" }
        return actions
    }
}
