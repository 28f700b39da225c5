import ArgumentParser
import FleetConsole
import FleetConsoleClient
import Foundation
import Logging
import Synchronization

/// `fleet-console migrate-db --from FILE --to postgres://…`: moves a
/// console's SQLite database to PostgreSQL (StoreCopier does the work).
struct MigrateDB: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate-db",
        abstract: "Copy a console's SQLite database into an empty PostgreSQL database, every row accounted for.",
        discussion: """
            Stop the console first (and keep it stopped until the copy is done): rows it writes to the SQLite file \
            after the copy starts are not copied, and a console running on the PostgreSQL database makes the copy \
            give up. Then start it again with --db postgres://… (or `database:` in its configuration).

            The SQLite file is brought to the current schema, then every table (events, sessions, usage, devices, \
            alerts, commands, rollouts, audit log) is copied in one PostgreSQL transaction, keeping ids. The \
            destination must be empty: its tables are created if missing, and a table that already has rows stops \
            the copy before anything is written. Both sides are counted before the commit; any difference, or any \
            other failure, rolls everything back.

            Exit status: 0 copied; 1 nothing copied (the message says why); 2 bad arguments.
            """)

    @Option(help: ArgumentHelp("The console's SQLite database file.", valueName: "file")) var from: String
    @Option(help: ArgumentHelp("The destination, postgres://USER@HOST[:PORT]/DATABASE[?sslmode=…&sslrootcert=CA]; the password in PGPASSWORD, never in the URL.",
                               valueName: "url")) var to: String
    @Flag(help: "Print the per-table counts as JSON instead of a table.") var json = false

    func validate() throws {
        let expected = "expected \(PostgresLocation.form)"
        guard to.hasPrefix("postgres://") || to.hasPrefix("postgresql://") else {
            throw ValidationError("--to is not a PostgreSQL URL; \(expected)")
        }
        do { _ = try PostgresLocation(url: to) } catch { throw ValidationError("--to: \(error.message)") }
    }

    func run() async throws {
        let destination: PostgresLocation
        do { destination = try PostgresLocation(url: to) } catch {
            FileHandle.standardError.write(Data("fleet-console: --to: \(error.message)\n".utf8))
            throw ExitCode(2)
        }
        if let warning = destination.transportWarning { FileHandle.standardError.write(Data("fleet-console: warning: \(warning)\n".utf8)) }
        var logger = Logger(label: "fleet-console.migrate-db") { StreamLogHandler.standardError(label: $0) }
        // Errors reach the user as the command's message; the pool's
        // start-up chatter (warnings) would only be noise here.
        logger.logLevel = .error
        let reporter = ProgressReporter()
        let started = ContinuousClock.now
        let counts: [StoreCopier.TableCount]
        do {
            counts = try await StoreCopier(from: from, to: destination).run(logger: logger) { reporter.report($0) }
        } catch {
            let message = (error as? StoreCopyError)?.message ?? String(describing: error)
            FileHandle.standardError.write(Data("fleet-console: migrate-db: \(message)\n".utf8))
            throw ExitCode(1)
        }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let rows = counts.reduce(0) { $0 + $1.postgres }
        if json {
            struct Report: Encodable {
                var from: String, to: String, rows: Int, seconds: Double
                var tables: [StoreCopier.TableCount]
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let report = Report(from: from, to: destination.redacted, rows: rows, seconds: (seconds * 1000).rounded() / 1000, tables: counts)
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            printTable(TextTable(["TABLE", "SQLITE", "POSTGRESQL"], counts.map { [$0.table, "\($0.sqlite)", "\($0.postgres)"] }))
            print("")
            print("copied \(rows) rows from \(from) to \(destination.redacted) in \(String(format: "%.1f", seconds)) s")
        }
    }
}

/// Progress on stderr: a line as each table is done, and one every 10% of a
/// table that takes more than one statement (`event: 120000/500000 (24%)`).
private final class ProgressReporter: Sendable {
    /// The table in progress and the last tenth reported.
    private let state = Mutex<(table: String, tenth: Int)>(("", 0))

    func report(_ p: StoreCopier.Progress) {
        let line: String? = state.withLock { state in
            if state.table != p.table { state = (p.table, 0) }
            if p.copied == p.total { return "\(p.table): \(p.copied)/\(p.total) (100%)" }
            let tenth = p.total > 0 ? p.copied * 10 / p.total : 0
            guard tenth > state.tenth else { return nil }
            state.tenth = tenth
            return "\(p.table): \(p.copied)/\(p.total) (\(p.copied * 100 / p.total)%)"
        }
        if let line { FileHandle.standardError.write(Data((line + "\n").utf8)) }
    }
}
