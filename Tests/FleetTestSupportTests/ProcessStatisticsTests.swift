import FleetTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Code of this test executable with a name `nm` finds, called below so
/// that its page is resident.
@_cdecl("fleet_process_statistics_probe")
func processStatisticsProbe(_ x: Int32) -> Int32 { x &* 3 &+ 1 }

@Suite struct ProcessStatisticsTests {
    /// The code profile of deploy/build-agent.sh rests on these addresses
    /// matching the ones `nm` prints for the executable.
    @Test func theCodeThatJustRanIsAmongTheResidentCodePages() async throws {
        #expect(processStatisticsProbe(7) == 22)
        let pages = try ProcessStatistics.residentCodePages(getpid())
        let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let nm = try await ProcessRunner.run(tool: "nm", arguments: ["--defined-only", executable], timeout: .seconds(60))
        let line = try #require(nm.standardOutput.split(separator: "\n").first { $0.hasSuffix(" fleet_process_statistics_probe") })
        let address = try #require(line.split(separator: " ").first.flatMap { UInt($0, radix: 16) })
        let pageSize = UInt(sysconf(Int32(_SC_PAGESIZE)))
        #expect(pages.contains(address / pageSize * pageSize), "the probe at 0x\(String(address, radix: 16)) is not among \(pages.count) pages")
        #expect(pages.allSatisfy { $0 % pageSize == 0 })
        // Code is mapped from the file, so every page lies within it.
        let size = try #require(try FileManager.default.attributesOfItem(atPath: executable)[.size] as? Int)
        #expect(pages.allSatisfy { $0 < UInt(size) })
    }

    @Test func theProportionalSetIsPartOfTheResidentSet() throws {
        let pid = getpid()
        let rss = ProcessStatistics.status(pid).rssMiB
        let pss = ProcessStatistics.proportionalSetMiB(pid)
        // At least this process's own heap; at most all it maps (shared pages count in part).
        #expect(pss > 0.5 && pss <= rss * 1.05, "PSS \(pss) MiB, RSS \(rss) MiB")
        #expect(ProcessStatistics.proportionalSetMiB(5_000_000) == 0)
    }

    @Test func aProcessThatIsGoneIsAnError() throws {
        // Above any pid_max the kernel allows (2^22).
        #expect(throws: (any Error).self) { try ProcessStatistics.residentCodePages(5_000_000) }
    }
}
