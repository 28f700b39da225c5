import Foundation

/// Where the engine keeps what must survive a restart: the usage ledger,
/// the schedules, and the marker of the session in progress. The agent
/// implements it over SQLite; the MassageEngineTesting target has
/// `InMemoryEngineStorage` and `JSONFileEngineStorage` for tests.
///
/// The engine never calls storage from its control tick. It records changes
/// in a pending `PersistenceBatch`; `MassageEngine.flushPersistence()` (run
/// by the agent's `EngineDriver` persistence loop, and by the host after commands or at
/// startup) hands the batch to `apply(_:)`. See docs/engine.md,
/// "Persistence hand-off".
public protocol EngineStorage: Sendable {
    /// Everything persisted so far (empty state on first start).
    func load() throws -> PersistedState
    /// Applies a batch atomically: all of it or none of it. The usage and the
    /// active-session marker are whole new values, so applying a batch twice
    /// gives the same state (no double counting).
    func apply(_ batch: PersistenceBatch) throws
    /// True if this storage keeps the engine's events: then every batch
    /// carries the events that happened with its changes (`events`), and
    /// `apply` must store them in the same transaction, so that a session's
    /// end is in the ledger exactly when its event is stored (the agent's
    /// outbox). Default false: events are only delivered on `events`.
    var persistsEvents: Bool { get }
}

extension EngineStorage {
    public var persistsEvents: Bool { false }
}

/// A pain lockout in force, persisted so that a restart does not lift it.
public struct PainLockout: Codable, Sendable, Equatable {
    /// Wall-clock end, as set (the engine counts the rest on its monotonic clock).
    public var until: Date
    /// Where it hurt: the zone (and point) of the step that was running.
    public var zone: Zone
    public var point: AcupressurePoint?
    public var sessionID: SessionID?

    public init(until: Date, zone: Zone, point: AcupressurePoint?, sessionID: SessionID?) {
        self.until = until
        self.zone = zone
        self.point = point
        self.sessionID = sessionID
    }

    enum CodingKeys: String, CodingKey {
        case until, zone, point, sessionID = "session_id"
    }
}

/// The persisted state of an engine.
public struct PersistedState: Codable, Sendable, Equatable {
    public var usage: UsageCounters
    /// Set while a session runs; found set at startup means the process died mid-session.
    public var activeSession: ActiveSessionMarker?
    public var schedules: [ScheduledSession]
    /// Faults latched when last persisted: a restart does not clear them.
    public var latchedFaults: [Fault]
    public var painLockout: PainLockout?

    enum CodingKeys: String, CodingKey {
        case usage
        case activeSession = "active_session"
        case schedules
        case latchedFaults = "latched_faults"
        case painLockout = "pain_lockout"
    }

    public init(usage: UsageCounters = UsageCounters(), activeSession: ActiveSessionMarker? = nil, schedules: [ScheduledSession] = [],
                latchedFaults: [Fault] = [], painLockout: PainLockout? = nil) {
        self.usage = usage
        self.activeSession = activeSession
        self.schedules = schedules
        self.latchedFaults = latchedFaults
        self.painLockout = painLockout
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        usage = try c.decode(UsageCounters.self, forKey: .usage)
        activeSession = try c.decodeIfPresent(ActiveSessionMarker.self, forKey: .activeSession)
        schedules = try c.decodeIfPresent([ScheduledSession].self, forKey: .schedules) ?? []
        latchedFaults = try c.decodeIfPresent([Fault].self, forKey: .latchedFaults) ?? []
        painLockout = try c.decodeIfPresent(PainLockout.self, forKey: .painLockout)
    }
}

/// The session in progress, as last checkpointed.
public struct ActiveSessionMarker: Codable, Sendable, Equatable {
    public var sessionID: SessionID
    public var programID: String
    public var scheduleID: ScheduleID?
    public var startedAt: Date
    /// Massage time of this session up to the last checkpoint; not yet in the ledger.
    public var usage: UsageTally

    enum CodingKeys: String, CodingKey {
        case sessionID = "session_id", programID = "program_id", scheduleID = "schedule_id"
        case startedAt = "started_at", usage
    }

    public init(sessionID: SessionID, programID: String, scheduleID: ScheduleID?, startedAt: Date, usage: UsageTally) {
        self.sessionID = sessionID
        self.programID = programID
        self.scheduleID = scheduleID
        self.startedAt = startedAt
        self.usage = usage
    }
}

/// A session booked for a wall-clock time. The program is kept as a
/// document so the schedule survives program changes; it is validated again
/// when its time comes.
public struct ScheduledSession: Codable, Sendable, Equatable, Identifiable {
    public var id: ScheduleID
    /// The id the session will have when it runs (events use it from `session_scheduled` on).
    public var sessionID: SessionID
    public var at: Date
    public var program: ProgramSpec
    /// Session-wide intensity, if one was given.
    public var intensity: Int?

    enum CodingKeys: String, CodingKey {
        case id, sessionID = "session_id", at, program, intensity
    }

    public init(id: ScheduleID, sessionID: SessionID, at: Date, program: ProgramSpec, intensity: Int?) {
        self.id = id
        self.sessionID = sessionID
        self.at = at
        self.program = program
        self.intensity = intensity
    }

    /// Length of the booked program (seconds).
    public var durationSeconds: Int { program.steps.reduce(0) { $0 + max(0, $1.durationSeconds) } }
    /// When the booked slot ends.
    public var end: Date { at.addingTimeInterval(TimeInterval(durationSeconds)) }
}

/// Changes to persist, handed from the engine to `EngineStorage.apply(_:)`.
public struct PersistenceBatch: Sendable, Equatable {
    public enum MarkerChange: Sendable, Equatable {
        case unchanged
        case set(ActiveSessionMarker)
        case clear
    }

    public enum LockoutChange: Sendable, Equatable {
        case unchanged
        case set(PainLockout)
        case clear
    }

    /// The whole ledger, when it changed.
    public var usage: UsageCounters?
    public var activeSession: MarkerChange = .unchanged
    /// Schedules to insert or replace (by id).
    public var upsertSchedules: [ScheduledSession] = []
    /// Schedules to delete (absent ids are ignored). No id is in both lists.
    public var removeSchedules: [ScheduleID] = []
    /// The whole set of latched faults, when it changed.
    public var latchedFaults: [Fault]?
    public var painLockout: LockoutChange = .unchanged
    /// The events that happened with these changes, in order (only for a
    /// storage whose `persistsEvents` is true; see `EngineStorage`).
    public var events: [EngineEvent] = []

    public init(usage: UsageCounters? = nil, activeSession: MarkerChange = .unchanged, upsertSchedules: [ScheduledSession] = [], removeSchedules: [ScheduleID] = [],
                latchedFaults: [Fault]? = nil, painLockout: LockoutChange = .unchanged, events: [EngineEvent] = []) {
        self.usage = usage
        self.activeSession = activeSession
        self.upsertSchedules = upsertSchedules
        self.removeSchedules = removeSchedules
        self.latchedFaults = latchedFaults
        self.painLockout = painLockout
        self.events = events
    }

    public var isEmpty: Bool {
        usage == nil && activeSession == .unchanged && upsertSchedules.isEmpty && removeSchedules.isEmpty
            && latchedFaults == nil && painLockout == .unchanged && events.isEmpty
    }

    /// Folds a later batch into this one, as if both were applied in order.
    public mutating func merge(_ newer: PersistenceBatch) {
        if let usage = newer.usage { self.usage = usage }
        if newer.activeSession != .unchanged { activeSession = newer.activeSession }
        if let faults = newer.latchedFaults { latchedFaults = faults }
        if newer.painLockout != .unchanged { painLockout = newer.painLockout }
        events.append(contentsOf: newer.events)
        for schedule in newer.upsertSchedules {
            removeSchedules.removeAll { $0 == schedule.id }
            if let index = upsertSchedules.firstIndex(where: { $0.id == schedule.id }) {
                upsertSchedules[index] = schedule
            } else {
                upsertSchedules.append(schedule)
            }
        }
        for id in newer.removeSchedules {
            upsertSchedules.removeAll { $0.id == id }
            if !removeSchedules.contains(id) { removeSchedules.append(id) }
        }
    }

    /// The state after applying this batch: the reference semantics every
    /// `EngineStorage` implements.
    public func applied(to state: PersistedState) -> PersistedState {
        var state = state
        if let usage { state.usage = usage }
        if let latchedFaults { state.latchedFaults = latchedFaults }
        switch painLockout {
        case .unchanged: break
        case .set(let lockout): state.painLockout = lockout
        case .clear: state.painLockout = nil
        }
        switch activeSession {
        case .unchanged: break
        case .set(let marker): state.activeSession = marker
        case .clear: state.activeSession = nil
        }
        let removed = Set(removeSchedules)
        state.schedules.removeAll { removed.contains($0.id) }
        for schedule in upsertSchedules {
            if let index = state.schedules.firstIndex(where: { $0.id == schedule.id }) {
                state.schedules[index] = schedule
            } else {
                state.schedules.append(schedule)
            }
        }
        state.schedules.sort { ($0.at, $0.id.rawValue) < ($1.at, $1.id.rawValue) }
        return state
    }
}
