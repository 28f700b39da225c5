import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Finds the package's built executables (massage-agent, fleet-console,
/// fleet-sim, mqtt-bench, …) for end-to-end tests that run them as a user
/// would.
///
/// `swift test` builds every product of the package into the same
/// directory as the test binary (`.build/<triple>/debug/`, which
/// `.build/debug` links to), so the search looks, in order, at:
/// 1. `FLEET_BUILD_PRODUCTS`, when set (a directory: for a CI that builds
///    elsewhere, or release builds);
/// 2. the directory of the running test binary (`Bundle.main`'s executable,
///    then `CommandLine.arguments[0]`) and its parents up to the build
///    directory, which covers `Foo.xctest/Contents/MacOS/Foo` on macOS.
///
/// If a product is missing, `swift build --product <name>` builds it.
public enum BuildProducts {
    /// The directories searched, in order, without duplicates.
    public static func searchDirectories() -> [URL] {
        var candidates: [URL] = []
        if let override = ProcessInfo.processInfo.environment["FLEET_BUILD_PRODUCTS"], !override.isEmpty {
            candidates.append(URL(fileURLWithPath: override, isDirectory: true))
        }
        var binaries: [URL] = []
        if let executable = Bundle.main.executableURL {
            binaries.append(executable)
        }
        if let first = CommandLine.arguments.first, !first.isEmpty {
            let cwd = FileManager.default.currentDirectoryPath
            binaries.append(URL(fileURLWithPath: first, relativeTo: URL(fileURLWithPath: cwd, isDirectory: true)))
        }
        for binary in binaries {
            var directory = binary.resolvingSymlinksInPath().deletingLastPathComponent()
            // The binary's own directory and up to three parents (the
            // .xctest bundle layout on macOS), stopping at `.build`.
            for _ in 0..<4 {
                if directory.lastPathComponent == ".build" || directory.path == "/" { break }
                candidates.append(directory)
                directory = directory.deletingLastPathComponent()
            }
        }
        var seen = Set<String>()
        return candidates.filter { seen.insert($0.standardizedFileURL.path).inserted }
    }

    /// The directory holding the built products: the first search
    /// directory that exists.
    public static func directory() throws -> URL {
        let directories = searchDirectories()
        for directory in directories where FileManager.default.fileExists(atPath: directory.path) {
            return directory
        }
        throw FixtureError(
            "cannot locate the build products directory (searched: "
                + directories.map(\.path).joined(separator: ", ")
                + "); set FLEET_BUILD_PRODUCTS to the directory holding the built executables")
    }

    /// The built executable named `name` (e.g. "massage-agent").
    public static func executable(named name: String) throws -> URL {
        let directories = searchDirectories()
        for directory in directories {
            let candidate = directory.appendingPathComponent(name)
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory),
                !isDirectory.boolValue, access(candidate.path, X_OK) == 0
            {
                return candidate
            }
        }
        throw FixtureError(
            "built executable '\(name)' not found in "
                + directories.map(\.path).joined(separator: ", ")
                + "; build it with `swift build --product \(name)` (or run the tests with `swift test`, "
                + "which builds every product), or set FLEET_BUILD_PRODUCTS to the directory holding it")
    }
}
