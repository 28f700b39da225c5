import Foundation
import Glibc

/// Keeps the agent's control path resident (`lock_memory`, on by default;
/// docs/operations.md, "Memory locking"). Without it the kernel may reclaim
/// the clean pages of the agent's code under memory pressure, and the first
/// tick that needs one again (a pain signal's abort path that has not run
/// for hours) waits for storage.
///
///   - `mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`: every page the
///     process has touched, or will touch, stays in memory. `MCL_ONFAULT`
///     locks pages as they are used, so the 8 MiB reservations of thread
///     stacks and malloc arenas do not become resident all at once;
///   - then `mlock` of every executable file mapping (the binary's code and
///     its libraries'), which reads all of it in: code no tick has run yet,
///     the abort paths above all, is resident before the first pain signal.
///
/// Locking needs CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK (the systemd
/// unit sets `LimitMEMLOCK=infinity`). Under a finite limit it is not tried:
/// `MCL_FUTURE` there would make an allocation beyond the limit fail.
public enum MemoryLock {
    public struct Report: Sendable, Equatable {
        /// True when `mlockall` succeeded (see `problem` for the code lock).
        public var locked: Bool
        /// Bytes of executable mappings locked (and read in).
        public var codeBytes: Int
        /// Why memory is not (fully) locked; nil when it is.
        public var problem: String?
    }

    /// Locks as described above. Safe to call once, early in `main`.
    public static func lock() -> Report {
        var limit = rlimit()
        getrlimit(RLIMIT_MEMLOCK_ID, &limit)
        if limit.rlim_cur != rlim_t.max, !hasIPCLock() {  // rlim_t.max: RLIM_INFINITY
            return Report(locked: false, codeBytes: 0, problem:
                "RLIMIT_MEMLOCK is \(limit.rlim_cur >> 10) KiB and the process lacks CAP_IPC_LOCK; run it with LimitMEMLOCK=infinity (deploy/systemd/massage-agent.service) or set lock_memory: false")
        }
        if mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT_FLAG) != 0 {
            return Report(locked: false, codeBytes: 0, problem: "mlockall: \(String(cString: strerror(errno)))")
        }
        var report = Report(locked: true, codeBytes: 0, problem: nil)
        for range in executableMappings(procMaps() ?? "") {
            let length = Int(range.upperBound - range.lowerBound)
            if mlock(UnsafeRawPointer(bitPattern: range.lowerBound), length) == 0 {
                report.codeBytes += length
            } else {
                report.problem = "mlock of code at 0x\(String(range.lowerBound, radix: 16)): \(String(cString: strerror(errno)))"
            }
        }
        return report
    }

    /// The address ranges of the file-backed executable mappings in `maps`
    /// (the format of /proc/self/maps).
    static func executableMappings(_ maps: String) -> [Range<UInt>] {
        maps.split(separator: "\n").compactMap { line in
            // start-end perms offset dev inode [path]
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count == 6, fields[1].count == 4, fields[1].dropFirst(2).first == "x",
                  fields[5].trimmingCharacters(in: .whitespaces).hasPrefix("/")
            else { return nil }
            let bounds = fields[0].split(separator: "-")
            guard bounds.count == 2, let start = UInt(bounds[0], radix: 16), let end = UInt(bounds[1], radix: 16), end > start else {
                return nil
            }
            return start..<end
        }
    }

    /// CAP_IPC_LOCK (bit 14) in the effective set, from /proc/self/status.
    static func hasIPCLock() -> Bool {
        guard let status = procFile("/proc/self/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let mask = UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16)
        else { return false }
        return mask & (1 << 14) != 0
    }

    private static func procMaps() -> String? { procFile("/proc/self/maps") }

    /// A /proc file read to its end (procfs files have no size).
    static func procFile(_ path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        return (try? handle.readToEnd()).map { String(decoding: $0, as: UTF8.self) }
    }

    private static let RLIMIT_MEMLOCK_ID = __rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue)
    /// Linux's MCL_ONFAULT (4.4+); not every glibc header exports it.
    private static let MCL_ONFAULT_FLAG: Int32 = 4
}
