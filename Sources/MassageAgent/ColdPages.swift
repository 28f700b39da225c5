import Foundation
import Glibc

/// Gives the kernel back the pages of the agent's own binary and shared
/// libraries that only start-up (or a TLS handshake) touched: reading the
/// configuration and the programs (YAML), migrating the database, parsing
/// flags, connecting. Without this they stay mapped for the life of the
/// process, and are most of its resident set (docs/BENCHMARKS.md).
///
/// It asks with `madvise(MADV_PAGEOUT)` (Linux 5.4+) over the read-only,
/// file-backed mappings in `/proc/self/maps`. That advice only reclaims; it
/// never changes what a page holds, so the code and data in use simply
/// fault back in (the working set). Writable mappings, the heap and stacks
/// are left alone. Kernels without `MADV_PAGEOUT` refuse the advice and
/// nothing changes.
public enum ColdPages {
    public struct Report: Sendable, Equatable {
        /// Mappings advised, and their total size.
        public var mappings: Int
        public var advisedBytes: Int
        /// Mappings the kernel refused (e.g. `EINVAL` before Linux 5.4).
        public var refused: Int
        /// The process's resident set (`VmRSS`) before and after, in KiB.
        public var residentKiBBefore: Int?
        public var residentKiBAfter: Int?
    }

    /// One line of `/proc/self/maps` that may be advised.
    struct Mapping: Equatable {
        var start: UInt
        var end: UInt
        var path: String
    }

    /// The read-only (not writable), file-backed mappings in `maps`.
    static func candidates(in maps: String) -> [Mapping] {
        maps.split(separator: "\n").compactMap { line in
            // start-end perms offset dev inode [path]
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count == 6, fields[1].count == 4, fields[1].dropFirst().first == "-" else { return nil }
            let path = fields[5].trimmingCharacters(in: .whitespaces)
            guard path.hasPrefix("/"), !path.hasSuffix(" (deleted)") else { return nil }
            let bounds = fields[0].split(separator: "-")
            guard bounds.count == 2, let start = UInt(bounds[0], radix: 16), let end = UInt(bounds[1], radix: 16), end > start else {
                return nil
            }
            return Mapping(start: start, end: end, path: path)
        }
    }

    /// Advises every candidate mapping of this process.
    @discardableResult
    public static func release() -> Report {
        let before = residentKiB()
        var report = Report(mappings: 0, advisedBytes: 0, refused: 0, residentKiBBefore: before, residentKiBAfter: nil)
        guard let maps = procFile("/proc/self/maps") else { return report }
        for mapping in candidates(in: maps) {
            let length = Int(mapping.end - mapping.start)
            if madvise(UnsafeMutableRawPointer(bitPattern: mapping.start), length, MADV_PAGEOUT) == 0 {
                report.mappings += 1
                report.advisedBytes += length
            } else {
                report.refused += 1
            }
        }
        report.residentKiBAfter = residentKiB()
        return report
    }

    /// A file of /proc, read to its end. (`String(contentsOfFile:)` stops
    /// after 4 KiB there: procfs files have no size.)
    static func procFile(_ path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        return (try? handle.readToEnd()).map { String(decoding: $0, as: UTF8.self) }
    }

    /// `VmRSS` of this process in KiB.
    static func residentKiB() -> Int? {
        guard let status = procFile("/proc/self/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return nil }
        return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
    }
}
