import FleetProtocol
import FleetTestSupport
import Foundation
import GRDB
@testable import MassageAgent
import MassageEngine
import MassageEngineTesting
import Synchronization
import Testing

@Suite("The engine's storage on a massager (real SQLite)")
struct AgentEngineStorageTests {
    struct Rig {
        let dir: TemporaryDirectory
        let database: AgentDatabase
        let storage: AgentEngineStorage
        let clock = ManualClock()
        let simulator = SimulatedMassager(seed: 5)

        init() throws {
            dir = try TemporaryDirectory(prefix: "engine-storage")
            database = try AgentDatabase(path: dir.url.appendingPathComponent("agent.sqlite").path)
            storage = AgentEngineStorage(database: database, stamper: MessageStamper(epoch: 1), eventsTopic: "massage/v1/s/d/events",
                                         outboxLimits: OutboxLimits(), onEventsStored: { _ in })
        }

        func engine() throws -> MassageEngine {
            let programs = try ProgramLibrary.load(directory: AgentProcess.repositoryRoot.appendingPathComponent("Config/programs"))
            return try MassageEngine(programs: programs, hardware: simulator, clock: clock, storage: storage)
        }

        func run(_ engine: MassageEngine, seconds: Double) {
            for _ in 0..<Int(seconds / 0.02) {
                clock.advance(by: 0.02)
                engine.tick()
            }
        }

        var outboxEventTypes: [String] {
            get async throws {
                try await Outbox(database: database).peek(limit: 10_000).filter { $0.topic.hasSuffix("/events") }.map {
                    try #require(try JSONSerialization.jsonObject(with: $0.payload) as? [String: Any])["type"] as? String ?? "?"
                }
            }
        }
    }

    @Test("a session's end goes into the outbox in the transaction that counts it in the ledger: a failed write stores neither, and the retry stores both once")
    func endAndLedgerInOneTransaction() async throws {
        let rig = try Rig()
        let engine = try rig.engine()
        try engine.start(.steps([step("calf", "kneading", 4, 10)]))
        rig.run(engine, seconds: 3)
        try engine.flushPersistence()
        #expect(try await rig.outboxEventTypes == ["session_started", "session_step"])

        // The outbox refuses writes for a moment (a full disk, say): the
        // session completes meanwhile.
        try await rig.database.writer.write { db in
            try db.execute(sql: "CREATE TEMP TRIGGER refuse BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        }
        rig.run(engine, seconds: 9)
        #expect(engine.telemetry().state == .idle)
        #expect(throws: (any Error).self) { try engine.flushPersistence() }
        // Neither the end nor its count is stored: a crash now would count the
        // session once, interrupted, and never publish a completion.
        #expect(try rig.database.load().usage.sessionsCompleted == 0)
        #expect(try rig.database.load().activeSession != nil)
        #expect(try await rig.outboxEventTypes == ["session_started", "session_step"])

        try await rig.database.writer.write { db in try db.execute(sql: "DROP TRIGGER refuse") }
        try engine.flushPersistence()
        #expect(try rig.database.load().usage.sessionsCompleted == 1)
        #expect(try rig.database.load().activeSession == nil)
        #expect(try await rig.outboxEventTypes == ["session_started", "session_step", "session_completed"])
    }

    @Test("latched faults and a pain lockout are kept in the agent's database across a restart")
    func latchesPersist() throws {
        let rig = try Rig()
        do {
            let engine = try rig.engine()
            try engine.start(.steps([step("thigh", "kneading", 4, 60)]))
            rig.run(engine, seconds: 3)
            rig.simulator.inject(.painButton)
            rig.run(engine, seconds: 0.04)
            rig.simulator.clear(.painButton)
            rig.simulator.inject(.actuatorFailure(.heel))
            rig.run(engine, seconds: 0.04)
            rig.simulator.clear(.actuatorFailure(.heel))
            try engine.flushPersistence()
        }
        let state = try rig.database.load()
        #expect(state.painLockout?.zone == .thigh)
        #expect(state.latchedFaults.map(\.kind) == [.hardwareFault])
        let again = try rig.engine()
        #expect(again.faults.map(\.kind) == [.hardwareFault])
        #expect(again.telemetry().painLockout?.zone == .thigh)
    }
}

private func step(_ target: String, _ technique: String, _ intensity: Int, _ seconds: Int) -> StepSpec {
    StepSpec(target: target, technique: technique, intensity: intensity, durationSeconds: seconds)
}
