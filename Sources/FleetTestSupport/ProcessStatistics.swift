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
}
