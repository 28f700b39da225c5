import FleetProtocol

/// When each changed device's row is written (`BatchWriter`): every device
/// within `interval` of changing, but not all in one commit.
///
/// Each device has a slot, from its address's hash; the slots take turns,
/// one every `interval / slots`, and a commit writes the devices of the
/// slots whose turn came since the previous commit. Before, every changed
/// row was written in one commit every 5 s: at 10,000 devices reporting
/// each second that was 10,000 records encoded at once (JSON encoding of
/// device records was 8 % of the console's CPU in a profile), and ingest
/// waited behind the burst: lag max 0.70 and 0.81 s in two runs of
/// `fleet-bench load --devices 10000 --thin`, 0.19 and 0.21 s spread out.
/// The bound is unchanged: a row is written at most `interval` (plus a
/// commit) after its device changed.
///
/// A pure value on the clock it is given: `BatchWriter` keeps it in a
/// `Mutex`, tests step it by hand.
struct DeviceRowSchedule {
    let interval: Duration
    private var waiting: [Set<DeviceAddress>]
    private var cursor = 0
    /// When the slot at `cursor` had its turn last.
    private var last: ContinuousClock.Instant

    init(interval: Duration, slots: Int, start: ContinuousClock.Instant) {
        self.interval = interval
        waiting = Array(repeating: [], count: max(1, slots))
        last = start
    }

    var waitingCount: Int { waiting.reduce(0) { $0 + $1.count } }

    /// Hashes are seeded per process: slots hold within one run, which is
    /// all they need to.
    private func slot(of address: DeviceAddress) -> Int {
        Int(UInt(bitPattern: address.hashValue) % UInt(waiting.count))
    }

    /// Notes changed devices; each waits for its slot's turn (once, however
    /// often it changes meanwhile).
    mutating func add(_ addresses: some Sequence<DeviceAddress>) {
        for address in addresses { waiting[slot(of: address)].insert(address) }
    }

    /// The devices whose slots' turns came by `now`.
    mutating func takeDue(now: ContinuousClock.Instant) -> [DeviceAddress] {
        let turn = interval / waiting.count
        let elapsed = now - last
        guard elapsed >= turn else { return [] }
        let turns = min(waiting.count, Int(elapsed / turn))
        // Behind by a whole interval or more (no commit for that long): every slot, and start again from now.
        last = turns == waiting.count ? now : last + turn * turns
        var due: [DeviceAddress] = []
        for _ in 0..<turns {
            due.append(contentsOf: waiting[cursor])
            waiting[cursor] = []
            cursor = (cursor + 1) % waiting.count
        }
        return due
    }

    /// Every waiting device (at shutdown).
    mutating func takeAll() -> [DeviceAddress] {
        defer { waiting = Array(repeating: [], count: waiting.count) }
        return waiting.flatMap { $0 }
    }
}
