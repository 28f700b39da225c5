import FleetProtocol
import Foundation
import Logging
import NIOSSL
import PostgresNIO

/// The console's store on PostgreSQL (postgres-nio), for consoles that
/// outgrow one machine: replicas share it (docs/scaling.md). The schema
/// and its semantics are SQLiteStore's — the same tables, keys, upserts and
/// named migrations — so the same test suite runs against both, and a test
/// compares the schemas the two make. Each role of ConsoleStore is an
/// extension in a file of its own.
///
/// A batch is one transaction of multi-row statements (one round trip per
/// table, not per row). Rows are written in key order so that two replicas
/// committing overlapping batches lock them in the same order. Exactly-once
/// storage of events is the unique key (site, device, epoch, seq) with
/// `ON CONFLICT DO NOTHING … RETURNING`: what comes back is what was new.
public final class PostgresStore: ConsoleStore {
    let client: PostgresClient
    let logger: Logger
    /// Runs the client's connection pool until `close()`. The pool must run
    /// before the first query (start-up reads happen before the console's
    /// service group runs), so the store owns this task rather than the group.
    private let runner: Task<Void, Never>

    public init(location: PostgresLocation, logger: Logger) async throws {
        // One connection first: a wrong address, password or TLS setting
        // (a server without TLS under sslmode=verify-full) is an error now,
        // not a pool that retries in the background while start-up waits.
        do { try await StoreCopier.probe(location, logger: logger) } catch let error as StoreCopyError {
            throw PostgresStoreError(message: error.message)
        }
        let tls: PostgresClient.Configuration.TLS = location.tlsConfiguration.map { .require($0) } ?? .disable
        var configuration = PostgresClient.Configuration(host: location.host, port: location.port, username: location.user,
                                                         password: location.password, database: location.database, tls: tls)
        configuration.options.maximumConnections = 8
        var background = logger
        background.logLevel = max(logger.logLevel, .notice)
        let client = PostgresClient(configuration: configuration, backgroundLogger: background)
        self.client = client
        self.logger = logger
        // Queries wait for the pool; starting them before run() began only
        // makes postgres-nio log a misleading warning, so wait for the task to start.
        let (started, signal) = AsyncStream.makeStream(of: Void.self)
        runner = Task {
            signal.finish()
            await client.run()
        }
        for await _ in started {}
        do {
            try await Self.migrate(client, logger: logger)
        } catch {
            runner.cancel()
            throw PostgresStoreError(message: "cannot open \(location.redacted): \(String(reflecting: error))")
        }
    }

    public func close() async {
        runner.cancel()
        _ = await runner.value
    }

    deinit { runner.cancel() }

    /// Seconds since 1970 by the server's clock: every replica's leases and
    /// row times on one clock, whatever their machines' clocks say.
    static let now = "extract(epoch from clock_timestamp())::double precision"

    // MARK: Replicas

    public func acquireLease(_ name: String, holder: String, for seconds: Double) async throws -> Bool {
        let rows = try await client.query("""
            INSERT INTO lease (name, holder, expires_at) VALUES (\(name), \(holder), \(unescaped: Self.now) + \(seconds))
            ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
            WHERE lease.holder = excluded.holder OR lease.expires_at < \(unescaped: Self.now)
            RETURNING holder
            """, logger: logger)
        return try await collect(rows.decode(String.self)).first == holder
    }

    public func releaseLease(_ name: String, holder: String) async throws {
        try await client.query("DELETE FROM lease WHERE name = \(name) AND holder = \(holder)", logger: logger)
    }

    // MARK: Helpers

    func collect<S: AsyncSequence>(_ sequence: S) async throws -> [S.Element] {
        var out: [S.Element] = []
        for try await element in sequence { out.append(element) }
        return out
    }

    /// JSON documents of one column; a row that no longer decodes is skipped, as in SQLiteStore.
    func decodeAll<T: Decodable>(_ type: T.Type, _ rows: PostgresRowSequence, from table: String) async throws -> [T] {
        StoredJSON.decode(T.self, try await collect(rows.decode(Data.self)), from: table, logger: logger)
    }
}

public struct PostgresStoreError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

extension Array {
    /// Consecutive slices of at most `size` elements.
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}

extension PostgresLocation {
    /// postgres-nio's TLS for `sslmode` (nil: `disable`). Never `.prefer`:
    /// a server without TLS is an error, not a quiet downgrade.
    public var tlsConfiguration: TLSConfiguration? {
        var tls = TLSConfiguration.makeClientConfiguration()
        switch sslMode {
        case .disable: return nil
        case .require: tls.certificateVerification = .none
        case .verifyCA: tls.certificateVerification = .noHostnameVerification
        case .verifyFull: tls.certificateVerification = .fullVerification
        }
        if let ca = sslRootCertificate { tls.trustRoots = .file(ca) }
        return tls
    }
}
