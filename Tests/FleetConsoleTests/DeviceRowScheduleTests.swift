@testable import FleetConsole
import FleetProtocol
import Testing

/// Device rows written within the interval of a change, spread over the
/// commits instead of all in one (issue 23), stepped by hand.
@Suite("device row schedule")
struct DeviceRowScheduleTests {
    let start = ContinuousClock.now
    let addresses = (0..<10_000).map { try! DeviceAddress(site: "site-\($0 % 7)", device: "dev-\($0)") }

    @Test("10,000 changed devices are written over 5 s in 50 commits of about 200, each exactly once")
    func spreadOverTheInterval() {
        var schedule = DeviceRowSchedule(interval: .seconds(5), slots: 50, start: start)
        schedule.add(addresses)
        var written: [DeviceAddress] = []
        var largest = 0
        for step in 1...50 {
            let due = schedule.takeDue(now: start + .milliseconds(100 * step))
            largest = max(largest, due.count)
            written += due
        }
        #expect(written.count == addresses.count)
        #expect(Set(written) == Set(addresses))
        #expect(schedule.waitingCount == 0)
        // Before: all 10,000 in one commit. A slot holds 200 on average.
        #expect(largest < 400, "the largest commit wrote \(largest) rows")
    }

    @Test("a device changed again waits for its slot's next turn, never longer than the interval, and is written once")
    func changedAgain() {
        var schedule = DeviceRowSchedule(interval: .seconds(5), slots: 50, start: start)
        let device = addresses[0]
        schedule.add([device])
        var turn: Int?
        for step in 1...50 where schedule.takeDue(now: start + .milliseconds(100 * step)) == [device] { turn = step }
        let first = try! #require(turn)
        // Changes three times after its turn: one write, at most 5 s later.
        for _ in 0..<3 { schedule.add([device]) }
        var again: [Int] = []
        for step in (first + 1)...(first + 50) where !schedule.takeDue(now: start + .milliseconds(100 * step)).isEmpty { again.append(step) }
        #expect(again == [first + 50])
    }

    @Test("nothing is due before a slot's turn; a commit late by more than the interval writes everything")
    func earlyAndLate() {
        var schedule = DeviceRowSchedule(interval: .seconds(5), slots: 50, start: start)
        schedule.add(addresses)
        #expect(schedule.takeDue(now: start + .milliseconds(99)).isEmpty)
        #expect(schedule.takeDue(now: start + .seconds(12)).count == addresses.count)
        schedule.add(addresses.prefix(10))
        // Restarted from the late commit: the next turn is 100 ms after it.
        #expect(schedule.takeDue(now: start + .seconds(12) + .milliseconds(50)).isEmpty)
    }

    @Test("shutdown takes every waiting device at once")
    func takeAll() {
        var schedule = DeviceRowSchedule(interval: .seconds(1), slots: 10, start: start)
        schedule.add(addresses.prefix(500))
        #expect(Set(schedule.takeAll()) == Set(addresses.prefix(500)))
        #expect(schedule.waitingCount == 0)
        #expect(schedule.takeDue(now: start + .seconds(2)).isEmpty)
    }
}
