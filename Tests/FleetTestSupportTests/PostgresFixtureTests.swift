import FleetTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

// Tests for the PostgreSQL fixture, driven only by psql (the console's
// PostgreSQL backend tests build on it).

/// `psql URL -c SQL`, as a person would type it: aligned output, no psqlrc.
private func psql(_ server: PostgresServer, _ url: String, _ sql: String) async throws -> ProcessRunner.Completed {
    try await ProcessRunner.run(server.psqlExecutable, arguments: ["-X", url, "-c", sql], timeout: .seconds(30))
}

/// psql's output lines, trimmed, without blank ones.
private func lines(_ output: String) -> [String] {
    output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
}

/// Whether `pid` is gone (or a zombie nobody reaped yet).
private func isDead(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
    guard let close = stat.lastIndex(of: ")") else { return true }
    let state = stat[stat.index(close, offsetBy: 2)]
    return state == "Z" || state == "X"
}

/// The real uid of `pid`, from /proc.
private func realUID(of pid: Int32) throws -> uid_t {
    let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
    let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("Uid:") })
    return try #require(uid_t(line.split(separator: "\t")[1]))
}

@Suite("PostgreSQL server fixture", .tags(.postgres))
struct PostgresFixtureTests {
    @Test("a started server runs SQL from psql, each database on its own")
    func databases() async throws {
        let server = try await PostgresServer.start()
        defer { server.stopNow() }
        #expect(server.isRunning)
        #expect(server.host == "127.0.0.1")
        #expect(server.url == "postgres://fleet@127.0.0.1:\(server.port)/fleet_test?sslmode=disable")
        #expect(acceptsTCPConnections(port: server.port))
        #expect(try await server.psql("select current_database(), current_user") == "fleet_test|fleet\n")

        let alpha = try await server.createDatabase("alpha")
        let beta = try await server.createDatabase("beta")
        #expect(alpha == "postgres://fleet@127.0.0.1:\(server.port)/alpha?sslmode=disable")
        #expect(beta == server.url(database: "beta"))

        let filled = try await psql(
            server, alpha, "create table t(x int); insert into t values (1); select count(*) from t")
        #expect(filled.succeeded, "\(filled)")
        // psql 15 prints every statement's result; the last is the count.
        #expect(lines(filled.standardOutput).suffix(4) == ["count", "-------", "1", "(1 row)"], "\(filled)")

        let elsewhere = try await psql(server, beta, "select count(*) from t")
        #expect(!elsewhere.succeeded)
        #expect(elsewhere.standardError.contains(#"relation "t" does not exist"#), "\(elsewhere)")

        let again = await #expect(throws: FixtureError.self) { try await server.createDatabase("alpha") }
        #expect(again?.message.contains("already exists") == true, "\(String(describing: again))")
        let badName = await #expect(throws: FixtureError.self) { try await server.createDatabase("a b") }
        #expect(badName?.message.contains("is not usable") == true)
    }

    @Test("stop closes the port; restart brings the same cluster back on the same port")
    func stopAndRestart() async throws {
        let server = try await PostgresServer.start()
        let port = server.port
        let directory = server.directory
        let url = try await server.createDatabase("kept")
        #expect(try await psql(server, url, "create table t(x int); insert into t values (7)").succeeded)

        try await server.stop()
        #expect(!server.isRunning)
        #expect(server.processIdentifier == nil)
        #expect(!acceptsTCPConnections(port: port))
        #expect(!(try await psql(server, url, "select 1")).succeeded)
        // SIGINT reached it: a fast shutdown, not the SIGKILL fallback.
        #expect(server.log().contains("received fast shutdown request"))
        #expect(server.log().contains("database system is shut down"))
        try await server.stop()  // idempotent

        try await server.restart()
        #expect(server.isRunning)
        #expect(server.port == port)
        #expect(try await server.psql("select x from t", database: "kept") == "7\n")

        server.stopNow()
        #expect(!acceptsTCPConnections(port: port))
        #expect(!FileManager.default.fileExists(atPath: directory.path))
        let refused = await #expect(throws: FixtureError.self) { try await server.restart() }
        #expect(refused?.message.contains("after stopNow()") == true)
    }

    @Test("kill is an outage: every server process dies at once, restart recovers committed rows")
    func killAndRestart() async throws {
        // synchronous_commit on: committed rows must survive the crash.
        let server = try await PostgresServer.start(settings: ["synchronous_commit": "on"])
        defer { server.stopNow() }
        try await server.psql("create table t(x int); insert into t values (1), (2)")
        let postmaster = try #require(server.processIdentifier)

        // A client in the middle of a query, to see its connection drop.
        let sleeper = try ProcessRunner.start(
            server.psqlExecutable, arguments: ["-X", server.url, "-c", "select pg_sleep(60)"])
        try await waitUntil(timeout: .seconds(10), "the sleeping query to run") {
            try await server.psql("select count(*) from pg_stat_activity where query = 'select pg_sleep(60)'") == "1\n"
        }
        let serverProcesses = try await server.psql("select pid from pg_stat_activity")
            .split(separator: "\n").compactMap { Int32($0) }
        #expect(serverProcesses.count >= 3, "\(serverProcesses)")

        try server.kill()
        #expect(!server.isRunning)
        #expect(!acceptsTCPConnections(port: server.port))
        #expect(isDead(postmaster))
        #expect(serverProcesses.allSatisfy(isDead), "\(serverProcesses)")
        #expect(try await sleeper.waitForExit(timeout: .seconds(10)) != .exited(0))
        #expect(!server.log().contains("shutdown request"))

        try await server.restart()
        #expect(server.log().contains("automatic recovery in progress"))
        #expect(try await server.psql("select count(*) from t") == "2\n")
    }

    @Test("as root the server runs as the postgres user, otherwise as the current user")
    func runsAsTheRightUser() async throws {
        let server = try await PostgresServer.start()
        defer { server.stopNow() }
        let pid = try #require(server.processIdentifier)
        let expected: uid_t
        if geteuid() == 0 {
            expected = try #require(getpwnam("postgres")).pointee.pw_uid
        } else {
            expected = geteuid()
        }
        #expect(try realUID(of: pid) == expected)
        let attributes = try FileManager.default.attributesOfItem(atPath: server.dataDirectory.path)
        #expect((attributes[.ownerAccountID] as? NSNumber)?.uint32Value == expected)
    }

    @Test("shared() is one server per process; concurrent tests each get a fresh database")
    func shared() async throws {
        async let first = PostgresServer.shared()
        async let second = PostgresServer.shared()
        let (a, b) = try await (first, second)
        #expect(a === b)
        #expect(a.isRunning)

        let urls = try await withThrowingTaskGroup(of: String.self) { group in
            for value in 1...6 {
                group.addTask {
                    let url = try await a.createDatabase()
                    let result = try await psql(
                        a, url, "create table t(x int); insert into t values (\(value)); select sum(x) from t")
                    #expect(result.succeeded, "\(result)")
                    #expect(lines(result.standardOutput).contains(String(value)), "\(result)")
                    return url
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(Set(urls).count == 6)
        #expect(urls.allSatisfy { $0.hasPrefix("postgres://fleet@127.0.0.1:\(a.port)/test_") })
    }

    @Test("a setting postgres rejects fails start-up with the server's own words")
    func badSetting() async throws {
        let error = await #expect(throws: FixtureError.self) {
            _ = try await PostgresServer.start(settings: ["no_such_setting": "1"])
        }
        #expect(error?.message.contains("exited during start-up") == true)
        #expect(error?.message.contains(#"unrecognized configuration parameter "no_such_setting""#) == true,
            "\(String(describing: error))")
    }

    @Test("a server nobody stops is shut down and removed when released")
    func deinitCleansUp() async throws {
        var server: PostgresServer? = try await PostgresServer.start()
        let pid = try #require(server?.processIdentifier)
        let port = try #require(server?.port)
        let directory = try #require(server?.directory)
        server = nil
        try await waitUntil(timeout: .seconds(10), "postgres \(pid) to be gone") { isDead(pid) }
        #expect(!acceptsTCPConnections(port: port))
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }

    @Test("withPostgresServer shuts the server down and removes its directory")
    func scoped() async throws {
        let (pid, directory) = try await withPostgresServer(database: "scoped") { server in
            #expect(try await server.psql("select current_database()") == "scoped\n")
            return (try #require(server.processIdentifier), server.directory)
        }
        #expect(isDead(pid))
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }
}
