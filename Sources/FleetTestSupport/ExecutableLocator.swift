import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Finds system tools the fixtures run (`mosquitto`, `mosquitto_pub`,
/// `mosquitto_sub`, `mosquitto_passwd`, `openssl`): every directory of
/// `PATH`, then the sbin directories, where Debian puts `mosquitto` and
/// which a non-root `PATH` often lacks.
public enum ExecutableLocator {
    /// Searched after `PATH`.
    public static let fallbackDirectories = ["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin", "/bin"]

    private static let cache = Mutex<[String: URL]>([:])

    /// The Debian package that ships a tool, for the "install it" hint.
    private static let packages = [
        "mosquitto": "mosquitto",
        "mosquitto_passwd": "mosquitto",
        "mosquitto_pub": "mosquitto-clients",
        "mosquitto_sub": "mosquitto-clients",
        "mosquitto_rr": "mosquitto-clients",
        "openssl": "openssl",
        "stdbuf": "coreutils",
    ]

    /// The executable named `name`, or an error naming what was searched
    /// and what to install.
    public static func find(_ name: String) throws -> URL {
        if let url = cache.withLock({ $0[name] }) {
            return url
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let directories = path.split(separator: ":").map(String.init) + fallbackDirectories
        for directory in directories where !directory.isEmpty {
            let candidate = (directory as NSString).appendingPathComponent(name)
            if access(candidate, X_OK) == 0 {
                let url = URL(fileURLWithPath: candidate)
                cache.withLock { $0[name] = url }
                return url
            }
        }
        let package = packages[name].map { "apt-get install \($0)" } ?? "install it"
        throw FixtureError(
            "'\(name)' was not found in PATH (\(path)) nor in \(fallbackDirectories.joined(separator: ", ")); "
                + "\(package) (deploy/test.sh installs everything the tests need)")
    }

    /// Like ``find(_:)``, but nil instead of an error.
    public static func findIfPresent(_ name: String) -> URL? {
        try? find(name)
    }
}
