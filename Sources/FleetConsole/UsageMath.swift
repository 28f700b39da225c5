import FleetProtocol

extension Usage {
    /// `self − earlier`, or nil when any counter went down (the device lost
    /// its ledger and started again from zero: a reset, never subtracted).
    func delta(since earlier: Usage) -> Usage? {
        func sub(_ a: [String: UInt64], _ b: [String: UInt64]) -> [String: UInt64]? {
            var out: [String: UInt64] = [:]
            for key in Set(a.keys).union(b.keys) {
                let x = a[key] ?? 0, y = b[key] ?? 0
                guard x >= y else { return nil }
                if x > y { out[key] = x - y }
            }
            return out
        }
        guard sessions.started >= earlier.sessions.started, sessions.completed >= earlier.sessions.completed,
              outboxDropped >= earlier.outboxDropped,
              let aborted = sub(sessions.aborted, earlier.sessions.aborted),
              let zone = sub(seconds.byZone, earlier.seconds.byZone), let point = sub(seconds.byPoint, earlier.seconds.byPoint),
              let technique = sub(seconds.byTechnique, earlier.seconds.byTechnique), let program = sub(seconds.byProgram, earlier.seconds.byProgram)
        else { return nil }
        return Usage(sessions: SessionCounts(started: sessions.started - earlier.sessions.started, completed: sessions.completed - earlier.sessions.completed, aborted: aborted),
                     seconds: UsageSeconds(byZone: zone, byPoint: point, byTechnique: technique, byProgram: program),
                     outboxDropped: outboxDropped - earlier.outboxDropped)
    }

    /// `self + other`, counter by counter, each sum saturating at 2^53
    /// (`UInt64.saturatingSum`): a device that "resets" its ledger with every
    /// message adds its counters in again each time, without end.
    func adding(_ other: Usage) -> Usage {
        func add(_ a: [String: UInt64], _ b: [String: UInt64]) -> [String: UInt64] { a.merging(b, uniquingKeysWith: UInt64.saturatingSum) }
        return Usage(sessions: SessionCounts(started: .saturatingSum(sessions.started, other.sessions.started),
                                             completed: .saturatingSum(sessions.completed, other.sessions.completed),
                                             aborted: add(sessions.aborted, other.sessions.aborted)),
                     seconds: UsageSeconds(byZone: add(seconds.byZone, other.seconds.byZone), byPoint: add(seconds.byPoint, other.seconds.byPoint),
                                           byTechnique: add(seconds.byTechnique, other.seconds.byTechnique), byProgram: add(seconds.byProgram, other.seconds.byProgram)),
                     outboxDropped: .saturatingSum(outboxDropped, other.outboxDropped))
    }

    var isZero: Bool { self == Usage() || (sessions.started == 0 && sessions.completed == 0 && sessions.abortedTotal == 0 && seconds == UsageSeconds() && outboxDropped == 0) }
}

extension UsageDay {
    mutating func add(_ delta: Usage) {
        sessions = SessionCounts(started: .saturatingSum(sessions.started, delta.sessions.started),
                                 completed: .saturatingSum(sessions.completed, delta.sessions.completed),
                                 aborted: sessions.aborted.merging(delta.sessions.aborted.filter { $0.value > 0 }, uniquingKeysWith: UInt64.saturatingSum))
        for (group, values) in [("zone", delta.seconds.byZone), ("point", delta.seconds.byPoint), ("technique", delta.seconds.byTechnique), ("program", delta.seconds.byProgram)] {
            for (key, seconds) in values where seconds > 0 {
                minutes[group, default: [:]][key, default: 0] += Double(seconds) / 60
            }
        }
    }
}

extension UInt64 {
    /// `a + b`, at most `ProtocolLimits.maxInteger` (2^53). Sums of the
    /// counters devices send saturate there instead of trapping, and stay
    /// values the console's own decoders accept when it reads them back
    /// (stored usage totals are decoded as `Usage` at start-up).
    static func saturatingSum(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? ProtocolLimits.maxInteger : Swift.min(sum, ProtocolLimits.maxInteger)
    }

    /// The version after `self`, at most 2^53 (a version a device reported
    /// may be as large as that; `+ 1` on it must not trap).
    var nextVersion: UInt64 { self >= ProtocolLimits.maxInteger ? ProtocolLimits.maxInteger : self + 1 }
}

extension Int {
    /// `a + b`, saturating at `Int.max` (counts of gaps and faults).
    static func saturatingSum(_ a: Int, _ b: Int) -> Int {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? (b > 0 ? .max : .min) : sum
    }
}
