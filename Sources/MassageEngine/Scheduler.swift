import Foundation

/// The booked sessions, in time order, as a pure value: it books, cancels,
/// finds clashes and hands over what is due; `EngineCore` decides whether a
/// due entry starts or is reported missed.
///
/// Rules: an entry is persisted before the booking is acknowledged (the
/// agent flushes before it replies); an entry whose time passed while the
/// device was off is reported missed at start-up, never started then (a
/// person may not be seated any more, or may be seated for something else);
/// an entry due while the device runs starts only if it is within the grace
/// period, nothing runs, nothing is unsafe, no pain lockout holds and its
/// program still validates.
struct Scheduler {
    private(set) var entries: [ScheduledSession] = []
    let capacity: Int
    let grace: TimeInterval

    init(capacity: Int, grace: TimeInterval) {
        self.capacity = capacity
        self.grace = grace
    }

    var isEmpty: Bool { entries.isEmpty }

    /// Takes over the persisted entries at start-up; returns those whose time
    /// came while the device was off (each to be reported missed).
    mutating func restore(_ persisted: [ScheduledSession], now: Date) -> [ScheduledSession] {
        let sorted = persisted.sorted { $0.at < $1.at }
        entries = sorted.filter { $0.at > now }
        return sorted.filter { $0.at <= now }
    }

    /// The first entry whose slot overlaps `start..<end`.
    func clash(from start: Date, to end: Date) -> ScheduledSession? {
        entries.first { $0.at < end && start < $0.end }
    }

    /// The first entry that starts before `end`.
    func first(before end: Date) -> ScheduledSession? {
        entries.first { $0.at < end }
    }

    var isFull: Bool { entries.count >= capacity }

    mutating func book(_ entry: ScheduledSession) {
        let index = entries.firstIndex { $0.at > entry.at } ?? entries.endIndex
        entries.insert(entry, at: index)
    }

    mutating func cancel(_ id: ScheduleID) throws(EngineError) {
        guard let index = entries.firstIndex(where: { $0.id == id }) else {
            let known = entries.isEmpty ? "there are no schedules" : "scheduled: " + entries.map(\.id.rawValue).joined(separator: ", ")
            throw EngineError(.notFound, "no schedule \"\(id)\"; \(known)")
        }
        entries.remove(at: index)
    }

    /// Removes and returns the next entry whose time has come, if any.
    mutating func takeDue(now: Date) -> ScheduledSession? {
        guard let first = entries.first, first.at <= now else { return nil }
        return entries.removeFirst()
    }

    /// Whether a due entry is too late to start.
    func isLate(_ entry: ScheduledSession, now: Date) -> Bool {
        now.timeIntervalSince(entry.at) > grace
    }
}
