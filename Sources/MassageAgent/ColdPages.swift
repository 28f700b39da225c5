import CGlibcMalloc
import Foundation
import Glibc

/// Gives the kernel back the pages of the agent's own binary and shared
/// libraries that only start-up (or a TLS handshake) touched: reading the
/// configuration and the programs (YAML), migrating the database, parsing
/// flags, connecting. Without this they stay mapped for the life of the
/// process, and are most of its resident set (docs/BENCHMARKS.md).
///
/// It asks with `madvise(MADV_PAGEOUT)` (Linux 5.4+) over the file-backed
/// mappings in `/proc/self/maps`: all of a read-only one; of a writable one
/// (the binary's data segment, which also holds its constant tables), only
/// the pages still as read from the file, never one the process wrote (those
/// would go to swap, where there is any). That advice only reclaims; it never
/// changes what a page holds, so the code and data in use simply fault back
/// in (the working set). The heap's free memory goes back with
/// `malloc_trim`; stacks are left alone. Kernels without `MADV_PAGEOUT`
/// (before 5.4) refuse that advice; the unmapping below still applies.
///
/// The kernel does not page out a page another process maps too: libc's,
/// and OpenSSL's that libmosquitto initialises, when the broker or other
/// programs run beside the agent. Of a read-only mapping, the pages still
/// mapped from the file after the page-out are then unmapped from this
/// process alone (`MADV_DONTNEED`): the page cache keeps them for the others,
/// and one this process uses again maps back without reading storage. That
/// advice would drop a private copy's contents, so it is given only where no
/// one can write (read-only mappings) and only to file pages (pagemap), never
/// to relocated data the loader copied and then made read-only.
public enum ColdPages {
    public struct Report: Sendable, Equatable {
        /// Mappings advised, and their total size.
        public var mappings: Int
        public var advisedBytes: Int
        /// Mappings the kernel refused (e.g. `EINVAL` before Linux 5.4).
        public var refused: Int
        /// Pages of read-only mappings the page-out left (other processes map
        /// them too; all pages, on a kernel without it) unmapped from this one.
        public var unmappedBytes = 0
        /// The process's resident set (`VmRSS`) before and after, in KiB.
        public var residentKiBBefore: Int?
        public var residentKiBAfter: Int?
    }

    /// One line of `/proc/self/maps` that may be advised.
    struct Mapping: Equatable {
        var start: UInt
        var end: UInt
        var path: String
        /// Writable: only its pages still as in the file are advised.
        var writable = false
    }

    /// The file-backed mappings in `maps` (not shared ones: those are
    /// other processes' memory too).
    static func candidates(in maps: String) -> [Mapping] {
        maps.split(separator: "\n").compactMap { line in
            // start-end perms offset dev inode [path]
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count == 6, fields[1].count == 4, fields[1].last == "p" else { return nil }
            let path = fields[5].trimmingCharacters(in: .whitespaces)
            guard path.hasPrefix("/"), !path.hasSuffix(" (deleted)") else { return nil }
            let bounds = fields[0].split(separator: "-")
            guard bounds.count == 2, let start = UInt(bounds[0], radix: 16), let end = UInt(bounds[1], radix: 16), end > start else {
                return nil
            }
            return Mapping(start: start, end: end, path: path, writable: fields[1].dropFirst().first == "w")
        }
    }

    /// The runs of pages of a writable mapping that may be advised, as page
    /// index ranges: every page except those the process has written (a
    /// private copy: present and not a file page, per /proc/self/pagemap).
    /// `entries` are the mapping's pagemap entries, one per page.
    static func unwrittenRuns(_ entries: [UInt64]) -> [Range<Int>] {
        runs(of: entries) { !($0 & present != 0 && $0 & filePage == 0) }
    }

    /// The runs of pages of a read-only mapping still mapped from the file
    /// (present and a file page, per /proc/self/pagemap): after the page-out,
    /// the ones other processes map too. A private copy (present, not a file
    /// page: relocated data) is never among them.
    static func mappedFileRuns(_ entries: [UInt64]) -> [Range<Int>] {
        runs(of: entries) { $0 & present != 0 && $0 & filePage != 0 }
    }

    private static let present: UInt64 = 1 << 63, filePage: UInt64 = 1 << 61

    /// The maximal runs of indices of `entries` whose entry is `included`.
    private static func runs(of entries: [UInt64], _ included: (UInt64) -> Bool) -> [Range<Int>] {
        var runs: [Range<Int>] = []
        var runStart: Int?
        for (index, entry) in entries.enumerated() {
            if !included(entry) {
                if let start = runStart { runs.append(start..<index) }
                runStart = nil
            } else if runStart == nil {
                runStart = index
            }
        }
        if let start = runStart { runs.append(start..<entries.count) }
        return runs
    }

    /// Advises every candidate mapping of this process.
    @discardableResult
    public static func release() -> Report {
        let before = residentKiB()
        var report = Report(mappings: 0, advisedBytes: 0, refused: 0, residentKiBBefore: before, residentKiBAfter: nil)
        // The heap's free memory first: start-up freed much of what it
        // allocated (about 0.3 MiB of the idle agent's, measured).
        _ = malloc_trim(0)
        guard let maps = procFile("/proc/self/maps") else { return report }
        let pagemap = FileHandle(forReadingAtPath: "/proc/self/pagemap")
        defer { try? pagemap?.close() }
        let pageSize = UInt(sysconf(Int32(_SC_PAGESIZE)))
        func addresses(_ mapping: Mapping, _ pages: Range<Int>) -> Range<UInt> {
            (mapping.start + UInt(pages.lowerBound) * pageSize)..<(mapping.start + UInt(pages.upperBound) * pageSize)
        }
        func advise(_ range: Range<UInt>, _ advice: Int32) -> Bool {
            madvise(UnsafeMutableRawPointer(bitPattern: range.lowerBound), Int(range.upperBound - range.lowerBound), advice) == 0
        }
        for mapping in candidates(in: maps) {
            var ranges = [mapping.start..<mapping.end]
            if mapping.writable {
                // (A page another thread writes between this read and the
                // advice may go to swap, if there is any; it comes back on use.)
                guard let pagemap, let entries = pagemapEntries(pagemap, mapping, pageSize: pageSize) else { continue }
                ranges = unwrittenRuns(entries).map { addresses(mapping, $0) }
            }
            var advised = false, refused = false
            for range in ranges {
                if advise(range, MADV_PAGEOUT) {
                    advised = true
                    report.advisedBytes += Int(range.upperBound - range.lowerBound)
                } else {
                    refused = true
                }
            }
            if refused { report.refused += 1 } else if advised { report.mappings += 1 }
            // What the page-out left of a read-only mapping: pages others map
            // too (or all of it, on a kernel without MADV_PAGEOUT).
            guard !mapping.writable, let pagemap,
                  let entries = pagemapEntries(pagemap, mapping, pageSize: pageSize)
            else { continue }
            for range in mappedFileRuns(entries).map({ addresses(mapping, $0) }) where advise(range, MADV_DONTNEED) {
                report.unmappedBytes += Int(range.upperBound - range.lowerBound)
            }
        }
        report.residentKiBAfter = residentKiB()
        return report
    }

    /// The /proc/self/pagemap entries of `mapping`'s pages, or nil when they
    /// cannot be read (then the mapping is left alone).
    static func pagemapEntries(_ pagemap: FileHandle, _ mapping: Mapping, pageSize: UInt) -> [UInt64]? {
        let count = Int((mapping.end - mapping.start) / pageSize)
        guard (try? pagemap.seek(toOffset: UInt64(mapping.start / pageSize) * 8)) != nil,
              let data = try? pagemap.read(upToCount: count * 8), data.count == count * 8
        else { return nil }
        return data.withUnsafeBytes { raw in (0..<count).map { raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self) } }
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
