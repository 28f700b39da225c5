import FleetTestSupport
import Foundation
import GRDB
@testable import MassageAgent
import Testing

@Suite("Agent outbox and command ids (real SQLite)")
struct OutboxTests {
    func database(_ dir: TemporaryDirectory) throws -> AgentDatabase {
        try AgentDatabase(path: dir.url.appendingPathComponent("agent.sqlite").path)
    }

    @Test("entries come back in insertion order and survive reopening the database")
    func orderAndDurability() async throws {
        let dir = try TemporaryDirectory(prefix: "outbox")
        do {
            let outbox = Outbox(database: try database(dir))
            for i in 0..<5 {
                try await outbox.enqueue([(topic: "t/\(i)", payload: Data("\(i)".utf8), qos: 1, retain: i == 4)])
            }
        }
        let reopened = Outbox(database: try database(dir))
        let entries = try await reopened.peek(limit: 10)
        #expect(entries.map(\.topic) == ["t/0", "t/1", "t/2", "t/3", "t/4"])
        #expect(entries.last?.retain == true)
        try await reopened.remove(Array(entries.prefix(2).map(\.id)))
        #expect(try await reopened.peek(limit: 10).map(\.topic) == ["t/2", "t/3", "t/4"])
    }

    @Test("a full outbox drops the oldest entries first and counts them")
    func boundedDropOldest() async throws {
        let dir = try TemporaryDirectory(prefix: "outbox")
        let outbox = Outbox(database: try database(dir), limits: OutboxLimits(maxMessages: 3, maxBytes: 1_000_000))
        for i in 0..<5 {
            try await outbox.enqueue([(topic: "t/\(i)", payload: Data("x".utf8), qos: 1, retain: false)])
        }
        #expect(try await outbox.peek(limit: 10).map(\.topic) == ["t/2", "t/3", "t/4"])
        #expect(try await outbox.droppedTotal() == 2)

        // 3 × 1 byte + 20 bytes = 23 > 22: the oldest goes.
        let bytes = Outbox(database: try database(dir), limits: OutboxLimits(maxMessages: 100, maxBytes: 22))
        try await bytes.enqueue([(topic: "big", payload: Data(repeating: 1, count: 20), qos: 1, retain: false)])
        #expect(try await bytes.peek(limit: 10).map(\.topic) == ["t/3", "t/4", "big"])
        #expect(try await bytes.droppedTotal() == 3)
    }

    @Test("a command id is remembered with its first reply; old ids beyond the newest 1,000 are pruned after 24 h")
    func commandIDs() async throws {
        let dir = try TemporaryDirectory(prefix: "replies")
        let log = try CommandReplyLog(database: try database(dir), keepNewest: 3, keepFor: 3600)
        let old = Date(timeIntervalSince1970: 1_000_000)
        for i in 0..<5 { try await log.record(id: "old-\(i)", reply: Data("r\(i)".utf8), at: old.addingTimeInterval(Double(i))) }
        #expect(try await log.reply(for: "old-0") == Data("r0".utf8))
        // Recording again does not replace the first reply.
        try await log.record(id: "old-4", reply: Data("second".utf8), at: old.addingTimeInterval(5))
        #expect(try await log.reply(for: "old-4") == Data("r4".utf8))
        // A day later: once pruned, only the newest 3 stay (ids older than 24 h beyond the newest 3 go).
        let later = old.addingTimeInterval(2 * 86_400)
        try await log.record(id: "new", reply: Data("n".utf8), at: later)
        try await log.prune(at: later)
        #expect(await log.count == 3)
        #expect(try await log.reply(for: "old-0") == nil)
        #expect(try await log.reply(for: "old-4") != nil)
        #expect(try await log.reply(for: "new") != nil)
        // After a restart the ids are known again (read from the database).
        let reopened = try CommandReplyLog(database: try database(dir), keepNewest: 3, keepFor: 3600)
        #expect(try await reopened.reply(for: "new") == Data("n".utf8))
        #expect(try await reopened.reply(for: "old-0") == nil)
    }

    @Test("pruning after each reply acts every so many replies, keeping everything of the last 24 h")
    func commandIDsPruneThemselves() async throws {
        let dir = try TemporaryDirectory(prefix: "replies-auto")
        let log = try CommandReplyLog(database: try database(dir), keepNewest: 3, keepFor: 3600)
        let old = Date(timeIntervalSince1970: 1_000_000)
        for i in 0..<5 { try await log.record(id: "old-\(i)", reply: Data("r".utf8), at: old.addingTimeInterval(Double(i))) }
        let later = old.addingTimeInterval(86_400)
        var sizes: [Int] = []
        for i in 0..<CommandReplyLog.pruneEvery {
            let at = later.addingTimeInterval(Double(i))
            try await log.record(id: "later-\(i)", reply: Data("r".utf8), at: at)
            try await log.pruneIfDue(at: at)  // as the agent does after each reply
            sizes.append(await log.count)
        }
        #expect(try await log.reply(for: "old-4") == nil, "the old ids were pruned within \(CommandReplyLog.pruneEvery) records")
        #expect(await log.count == CommandReplyLog.pruneEvery, "every id of the last 24 h stays")
        // The five old records count too: the 50th record overall prunes.
        let firstPrune = sizes.indices.dropFirst().first { sizes[$0] < sizes[$0 - 1] }
        #expect(firstPrune.map { 5 + $0 + 1 } == CommandReplyLog.pruneEvery, "sizes after each record: \(sizes)")
        // The ids are still known after the prune: a repeat reads its reply.
        #expect(try await log.reply(for: "later-0") == Data("r".utf8))
        // A restart knows exactly the ids that stayed.
        let reopened = try CommandReplyLog(database: try database(dir), keepNewest: 3, keepFor: 3600)
        #expect(try await reopened.reply(for: "old-0") == nil)
        #expect(try await reopened.reply(for: "later-49") == Data("r".utf8))
    }

    @Test("an agent upgraded from a database whose command ids were remembered in the old table still answers a repeat with the first reply")
    func commandIDsSurviveTheV3Migration() async throws {
        let dir = try TemporaryDirectory(prefix: "replies-upgrade")
        let path = dir.url.appendingPathComponent("agent.sqlite").path
        do {
            // The database as the previous version left it.
            let old = try DatabaseQueue(path: path)
            try AgentDatabase.migrator.migrate(old, upTo: "v2: delivered events, kept for resync")
            try await old.write { db in
                for i in 0..<3 {
                    try db.execute(sql: "INSERT INTO command_reply(id, reply, received_at) VALUES (?, ?, ?)",
                                   arguments: ["before-\(i)", Data("reply \(i)".utf8), 1_000_000 + Double(i)])
                }
            }
        }
        let log = try CommandReplyLog(database: try AgentDatabase(path: path))
        for i in 0..<3 { #expect(try await log.reply(for: "before-\(i)") == Data("reply \(i)".utf8)) }
        try await log.record(id: "after", reply: Data("new".utf8))
        try await log.record(id: "before-1", reply: Data("second".utf8))
        #expect(try await log.reply(for: "before-1") == Data("reply 1".utf8), "the first reply stays the reply")
        #expect(try await log.reply(for: "after") == Data("new".utf8))
        #expect(await log.count == 4)
        let applied = try await AgentDatabase(path: path).writer.read { db in try AgentDatabase.migrator.appliedMigrations(db) }
        #expect(applied.last == "v3: command replies in one B-tree keyed by id")
    }

    @Test("the epoch grows by one on every start and persists")
    func epoch() throws {
        let dir = try TemporaryDirectory(prefix: "epoch")
        #expect(try database(dir).nextEpoch() == 1)
        #expect(try database(dir).nextEpoch() == 2)
        #expect(try database(dir).nextEpoch() == 3)
    }

    @Test("historical marking adds the flag and keeps every field")
    func historical() throws {
        let marked = AgentService.markHistorical(Data(#"{"seq":3,"type":"session_started","epoch":2}"#.utf8))
        let object = try #require(try JSONSerialization.jsonObject(with: marked) as? [String: Any])
        #expect(object["historical"] as? Bool == true)
        #expect(object["seq"] as? Int == 3)
        #expect(object["type"] as? String == "session_started")
    }
}
