import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A fresh, private (0700) directory under the system temporary directory,
/// removed with everything in it by ``remove()`` or when the last
/// reference goes away.
///
/// Set `FLEET_KEEP_TEST_DIRS=1` in the environment to keep every test
/// directory (broker configs, logs, certificates, process output) for a
/// post-mortem; their paths appear in fixture error messages.
public final class TemporaryDirectory: Sendable {
    /// The directory.
    public let url: URL
    private let removed = Mutex(false)

    /// Creates a unique directory named `<prefix>.XXXXXX` (mkdtemp).
    public init(prefix: String = "massagefleet") throws {
        let safePrefix = String(prefix.map { $0 == "/" || $0 == " " ? "-" : $0 })
        let base = FileManager.default.temporaryDirectory.path
        let template = (base.hasSuffix("/") ? base : base + "/") + safePrefix + ".XXXXXX"
        var buffer = Array(template.utf8CString)
        let created = buffer.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) != nil }
        guard created else {
            let reason = String(cString: strerror(errno))
            throw FixtureError(
                "cannot create a temporary directory from template \(template): \(reason); "
                    + "check that \(base) exists and is writable (or set TMPDIR)")
        }
        let path = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        url = URL(fileURLWithPath: path, isDirectory: true)
    }

    /// The directory's path.
    public var path: String { url.path }

    /// The URL of `name` inside the directory (nothing is created).
    public func file(_ name: String) -> URL {
        url.appendingPathComponent(name)
    }

    /// Whether ``remove()`` already ran.
    public var isRemoved: Bool { removed.withLock { $0 } }

    /// Removes the directory and its contents. Idempotent. Kept when
    /// `FLEET_KEEP_TEST_DIRS=1`.
    public func remove() {
        let first = removed.withLock { done in
            defer { done = true }
            return !done
        }
        guard first, !TemporaryDirectory.keepAll else { return }
        try? FileManager.default.removeItem(at: url)
    }

    deinit {
        remove()
    }

    static var keepAll: Bool {
        ProcessInfo.processInfo.environment["FLEET_KEEP_TEST_DIRS"] == "1"
    }
}
