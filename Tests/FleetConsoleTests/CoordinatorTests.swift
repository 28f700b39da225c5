@testable import FleetConsole
import FleetTestSupport
import Foundation
import Logging
import Synchronization
import Testing

/// The coordinator decision on its own: a lease table the test answers for
/// (the real one, on PostgreSQL, is ReplicaTests'), participants that
/// record what they were asked, and the console's manual clock.
@Suite("Coordinator: who does the once-only work, decided in one place")
struct CoordinatorTests {
    /// A lease table whose next answer the test sets.
    final class ScriptedLeases: LeaseStore {
        enum Answer { case granted, refused, failing }
        let answer = Mutex(Answer.granted)
        let released = Mutex(0)
        func acquireLease(_ name: String, holder: String, for seconds: Double) async throws -> Bool {
            switch answer.withLock({ $0 }) {
            case .granted: return true
            case .refused: return false
            case .failing: throw CocoaError(.fileReadUnknown)
            }
        }
        func releaseLease(_ name: String, holder: String) async throws { released.withLock { $0 += 1 } }
    }

    /// The calls participants got, in order, across participants.
    final class Journal: Sendable {
        private let entries = Mutex<[String]>([])
        func append(_ entry: String) { entries.withLock { $0.append(entry) } }
        func take() -> [String] { entries.withLock { all in defer { all = [] }; return all } }
    }

    final class Participant: CoordinatedWork {
        let name: String
        let journal: Journal
        let loads: Mutex<Bool>
        init(_ name: String, journal: Journal, loads: Bool = true) {
            self.name = name
            self.journal = journal
            self.loads = Mutex(loads)
        }
        func takeOver() async -> Bool {
            journal.append("\(name).takeOver")
            return loads.withLock { $0 }
        }
        func coordinationBegan() { journal.append("\(name).began") }
        func handOver() { journal.append("\(name).handOver") }
    }

    static func context(replica: String?) -> ConsoleContext {
        var configuration = ConsoleConfiguration(databasePath: "/nonexistent/unused.sqlite")
        configuration.replica = replica
        var logger = Logger(label: "test.coordinator")
        logger.logLevel = .critical
        return ConsoleContext(configuration: configuration, logger: logger, clock: ManualConsoleClock(Date(timeIntervalSince1970: 1_750_000_000)), metrics: ConsoleMetrics())
    }

    @Test("a console on SQLite coordinates from the start and takes no lease")
    func sqliteCoordinatesAlone() async throws {
        let leases = ScriptedLeases()
        leases.answer.withLock { $0 = .refused }
        let coordinator = Coordinator(context: Self.context(replica: nil), lease: CoordinatorLease(store: leases, instance: "c1"))
        #expect(!coordinator.usesLease && coordinator.isCoordinator)
        try await coordinator.run() // returns at once: nothing to renew
        #expect(coordinator.isCoordinator, "a refused lease means nothing to a console that takes none")
        await coordinator.release()
        #expect(leases.released.withLock { $0 } == 0)
    }

    @Test("taking the lease: every participant loads first, in order, and only then does the console coordinate")
    func takeOverThenBegin() async throws {
        let journal = Journal()
        let leases = ScriptedLeases()
        let coordinator = Coordinator(context: Self.context(replica: "r1"), lease: CoordinatorLease(store: leases, instance: "r1"))
        let commands = Participant("commands", journal: journal)
        let health = Participant("health", journal: journal)
        coordinator.register(commands)
        coordinator.register(health)
        #expect(coordinator.usesLease && !coordinator.isCoordinator, "a replica waits for the lease")

        health.loads.withLock { $0 = false }
        await coordinator.renew(seconds: 60)
        #expect(!coordinator.isCoordinator, "a participant could not load: the lease is not taken up")
        #expect(journal.take() == ["commands.takeOver", "health.takeOver"])

        health.loads.withLock { $0 = true }
        _ = journal.take()
        await coordinator.renew(seconds: 60)
        #expect(coordinator.isCoordinator)
        #expect(journal.take() == ["commands.takeOver", "health.takeOver", "commands.began", "health.began"])

        _ = journal.take()
        await coordinator.renew(seconds: 60)
        #expect(coordinator.isCoordinator && journal.take().isEmpty, "a renewal of a held lease changes nothing")
    }

    @Test("losing the lease, or not knowing, stops the coordination at once and hands the work over")
    func loseAndHandOver() async throws {
        for loss in [ScriptedLeases.Answer.refused, .failing] {
            let journal = Journal()
            let leases = ScriptedLeases()
            let coordinator = Coordinator(context: Self.context(replica: "r1"), lease: CoordinatorLease(store: leases, instance: "r1"))
            coordinator.register(Participant("commands", journal: journal))
            await coordinator.renew(seconds: 60)
            #expect(coordinator.isCoordinator)
            _ = journal.take()
            leases.answer.withLock { $0 = loss }
            await coordinator.renew(seconds: 60)
            #expect(!coordinator.isCoordinator, "\(loss)")
            #expect(journal.take() == ["commands.handOver"], "\(loss)")
        }
    }

    @Test("a console that cannot renew in time stops by its own clock, before the lease could pass to another")
    func expiresByItself() async throws {
        let leases = ScriptedLeases()
        let coordinator = Coordinator(context: Self.context(replica: "r1"), lease: CoordinatorLease(store: leases, instance: "r1"))
        await coordinator.renew(seconds: 0.3) // held for 5/6 of it: 0.25 s by the monotonic clock
        #expect(coordinator.isCoordinator)
        try await waitUntil(timeout: .seconds(10), "the held lease lapsed without a renewal") { !coordinator.isCoordinator }
        await coordinator.release()
        #expect(leases.released.withLock { $0 } == 0, "nothing to give up once it lapsed")
    }

    @Test("a clean shutdown gives the lease up at once")
    func releaseOnShutdown() async throws {
        let leases = ScriptedLeases()
        let coordinator = Coordinator(context: Self.context(replica: "r1"), lease: CoordinatorLease(store: leases, instance: "r1"))
        await coordinator.renew(seconds: 60)
        await coordinator.release()
        #expect(!coordinator.isCoordinator && leases.released.withLock { $0 } == 1)
    }
}
