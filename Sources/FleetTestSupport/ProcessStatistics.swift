import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What /proc says about a process, for the benchmarks: resident memory,
/// threads and CPU time (Linux).
public enum ProcessStatistics {
    /// (VmRSS in MiB, threads) of `pid` (this process when nil); zeros when it is gone.
    public static func status(_ pid: Int32? = nil) -> (rssMiB: Double, threads: Int) {
        let path = pid.map { "/proc/\($0)/status" } ?? "/proc/self/status"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return (0, 0) }
        var rss = 0.0, threads = 0
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if line.hasPrefix("VmRSS:"), parts.count >= 2 { rss = (Double(parts[1]) ?? 0) / 1024 }
            if line.hasPrefix("Threads:"), parts.count >= 2 { threads = Int(parts[1]) ?? 0 }
        }
        return (rss, threads)
    }

    /// Proportional set size of `pid` in MiB, from /proc/PID/smaps_rollup:
    /// its resident pages, each page that other processes map too divided
    /// among them. What the process costs the machine's memory, where RSS
    /// counts a library page shared by every process in each of them.
    /// 0 when it is gone or the file cannot be read.
    public static func proportionalSetMiB(_ pid: Int32) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Pss:") }),
              let kib = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) })
        else { return 0 }
        return kib / 1024
    }

    /// CPU seconds (user + system) `pid` has used (this process when nil); 0 when it is gone.
    public static func cpuSeconds(_ pid: Int32? = nil) -> Double {
        let path = pid.map { "/proc/\($0)/stat" } ?? "/proc/self/stat"
        guard let stat = try? String(contentsOfFile: path, encoding: .utf8), let close = stat.lastIndex(of: ")") else { return 0 }
        // Fields after the command name: state is 3rd overall; utime and stime are the 14th and 15th.
        let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
        guard fields.count > 12 else { return 0 }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        return ((Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)) / ticks
    }

    /// Raises this process's open-file limit to its hard limit: a thousand
    /// clients in one process need more than the default 1,024 descriptors.
    public static func raiseOpenFileLimit() {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    /// The pages of `pid`'s executable's code that are resident now, as
    /// addresses relative to where the executable is loaded (the addresses
    /// `nm` prints for a position-independent executable). Read from
    /// /proc/PID/maps and /proc/PID/pagemap, whose "present" bit an owner
    /// may read. Throws when /proc cannot be read.
    public static func residentCodePages(_ pid: Int32) throws -> [UInt] {
        let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
        let maps = try procText("/proc/\(pid)/maps")
        let pagemap = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/\(pid)/pagemap"))
        defer { try? pagemap.close() }
        let pageSize = UInt(sysconf(Int32(_SC_PAGESIZE)))
        var loadBase: UInt?
        var pages: [UInt] = []
        for line in maps.split(separator: "\n") {
            // start-end perms offset dev inode path
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count == 6, fields[5].trimmingCharacters(in: .whitespaces) == executable else { continue }
            let bounds = fields[0].split(separator: "-").compactMap { UInt($0, radix: 16) }
            guard bounds.count == 2, let offset = UInt(fields[2], radix: 16) else { continue }
            let base = loadBase ?? (bounds[0] - offset)
            loadBase = base
            guard fields[1].contains("x") else { continue }
            let count = Int((bounds[1] - bounds[0]) / pageSize)
            try pagemap.seek(toOffset: UInt64(bounds[0] / pageSize * 8))
            let entries = try pagemap.read(upToCount: count * 8) ?? Data()
            entries.withUnsafeBytes { raw in
                for index in 0..<min(count, raw.count / 8) where raw.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self) >> 63 == 1 {
                    pages.append(bounds[0] + UInt(index) * pageSize - base)
                }
            }
        }
        return pages
    }

    /// A /proc file read to its end (they have no size, so `String(contentsOfFile:)` stops early).
    private static func procText(_ path: String) throws -> String {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        return String(decoding: try handle.readToEnd() ?? Data(), as: UTF8.self)
    }
}
