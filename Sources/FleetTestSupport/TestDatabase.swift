import Foundation

/// Which store the console tests run against: `FLEET_TEST_DATABASE=postgres`
/// runs them on PostgreSQL (a database per console on the shared test
/// server); unset or `sqlite`, on SQLite files. `deploy/test.sh` runs the
/// console suite once with each.
public enum TestDatabase: String, Sendable {
    case sqlite
    case postgres

    public static var current: TestDatabase {
        switch ProcessInfo.processInfo.environment["FLEET_TEST_DATABASE"]?.lowercased() {
        case "postgres", "postgresql": return .postgres
        default: return .sqlite
        }
    }
}
