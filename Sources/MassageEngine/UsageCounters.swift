/// Massage time by zone, point, technique and program, in whole
/// milliseconds (control ticks are whole milliseconds, so sums are exact).
public struct UsageTally: Codable, Sendable, Equatable {
    public var byZone: [String: Int64] = [:]
    public var byPoint: [String: Int64] = [:]
    public var byTechnique: [String: Int64] = [:]
    public var byProgram: [String: Int64] = [:]

    enum CodingKeys: String, CodingKey {
        case byZone = "by_zone", byPoint = "by_point", byTechnique = "by_technique", byProgram = "by_program"
    }

    public init() {}

    public var isEmpty: Bool { byZone.isEmpty && byPoint.isEmpty && byTechnique.isEmpty && byProgram.isEmpty }

    /// Adds `milliseconds` of `step` of program `programID`.
    public mutating func add(milliseconds: Int64, step: ProgramStep, programID: String) {
        guard milliseconds > 0 else { return }
        byZone[step.zone.rawValue, default: 0] += milliseconds
        if let point = step.point { byPoint[point.rawValue, default: 0] += milliseconds }
        byTechnique[step.technique.rawValue, default: 0] += milliseconds
        byProgram[programID, default: 0] += milliseconds
    }

    public mutating func add(_ other: UsageTally) {
        for (k, v) in other.byZone { byZone[k, default: 0] += v }
        for (k, v) in other.byPoint { byPoint[k, default: 0] += v }
        for (k, v) in other.byTechnique { byTechnique[k, default: 0] += v }
        for (k, v) in other.byProgram { byProgram[k, default: 0] += v }
    }
}

/// The cumulative usage ledger of a device: sessions started, completed and
/// aborted by reason; massage time by zone, point, technique and program.
/// Persisted through `EngineStorage`; see docs/engine.md for why it is exact
/// and never double-counted across restarts.
public struct UsageCounters: Codable, Sendable, Equatable {
    public var sessionsStarted: Int = 0
    public var sessionsCompleted: Int = 0
    /// Aborted sessions by reason wire name; every reason is present.
    public var sessionsAborted: [String: Int] = Dictionary(uniqueKeysWithValues: AbortReason.allCases.map { ($0.rawValue, 0) })
    /// Massage time (milliseconds).
    public var milliseconds = UsageTally()

    enum CodingKeys: String, CodingKey {
        case sessionsStarted = "sessions_started"
        case sessionsCompleted = "sessions_completed"
        case sessionsAborted = "sessions_aborted"
        case milliseconds
    }

    public init() {}

    public func aborted(_ reason: AbortReason) -> Int { sessionsAborted[reason.rawValue] ?? 0 }

    /// Total aborted sessions.
    public var sessionsAbortedTotal: Int { sessionsAborted.values.reduce(0, +) }

    /// Massage time in seconds by zone id.
    public var secondsByZone: [String: Double] { milliseconds.byZone.mapValues { Double($0) / 1000 } }
    /// Massage time in seconds by point id.
    public var secondsByPoint: [String: Double] { milliseconds.byPoint.mapValues { Double($0) / 1000 } }
    /// Massage time in seconds by technique id.
    public var secondsByTechnique: [String: Double] { milliseconds.byTechnique.mapValues { Double($0) / 1000 } }
    /// Massage time in seconds by program id.
    public var secondsByProgram: [String: Double] { milliseconds.byProgram.mapValues { Double($0) / 1000 } }
}
