import FleetTestSupport
import Foundation
import Glibc
import Testing
@testable import MassageAgent

@Suite("Giving start-up pages back to the kernel")
struct ColdPagesTests {
    @Test("only read-only, file-backed mappings are candidates")
    func candidates() {
        let maps = """
            5630044ee000-563004cd8000 r-xp 00000000 fe:00 5390744                    /usr/bin/massage-agent
            563004cd9000-563004d0b000 r--p 007ea000 fe:00 5390744                    /usr/bin/massage-agent
            563004d0b000-563004d6d000 rw-p 0081c000 fe:00 5390744                    /usr/bin/massage-agent
            56303343a000-56303345b000 rw-p 00000000 00:00 0                          [heap]
            7f5c58021000-7f5c5c000000 ---p 00000000 00:00 0
            7f5c70000000-7f5c70001000 r--p 00000000 fe:00 42                         /tmp/with space.bin
            7f5c71000000-7f5c71001000 r--p 00000000 fe:00 43                         /tmp/gone.bin (deleted)
            7ffd1a5f2000-7ffd1a5f6000 r--p 00000000 00:00 0                          [vvar]
            7ffd1a5f6000-7ffd1a5f8000 r-xp 00000000 00:00 0                          [vdso]
            """
        let found = ColdPages.candidates(in: maps)
        #expect(found == [
            .init(start: 0x5630_044e_e000, end: 0x5630_04cd_8000, path: "/usr/bin/massage-agent"),
            .init(start: 0x5630_04cd_9000, end: 0x5630_04d0_b000, path: "/usr/bin/massage-agent"),
            .init(start: 0x7f5c_7000_0000, end: 0x7f5c_7000_1000, path: "/tmp/with space.bin"),
        ])
    }

    @Test("/proc files are read to their end (String(contentsOfFile:) stops at 4 KiB there)")
    func wholeProcFiles() throws {
        let maps = try #require(ColdPages.procFile("/proc/self/maps"))
        #expect(maps.utf8.count > 4096, "a test process has more than 4 KiB of mappings")
        #expect(maps.contains("[stack]"), "the stack, listed near the end, is missing: the file was cut short")
    }

    /// Resident KiB of the mapping that starts at `address`, from /proc/self/smaps.
    func residentKiB(ofMappingAt address: UInt) -> Int? {
        guard let smaps = ColdPages.procFile("/proc/self/smaps") else { return nil }
        let header = String(address, radix: 16) + "-"
        var inMapping = false
        for line in smaps.split(separator: "\n") {
            if line.first?.isHexDigit == true, line.contains("-"), !line.hasSuffix(":") {
                inMapping = line.hasPrefix(header)
            } else if inMapping, line.hasPrefix("Rss:") {
                return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
            }
        }
        return nil
    }

    @Test("a read-only file mapping's pages leave the resident set, and read back the same")
    func releasesAndKeepsContents() throws {
        let dir = try TemporaryDirectory(prefix: "cold-pages")
        let path = dir.url.appendingPathComponent("pages.bin").path
        let size = 1 << 20
        let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let fd = open(path, O_RDONLY)
        #expect(fd >= 0)
        defer { close(fd) }
        #expect(fsync(fd) == 0)  // clean pages, as a binary's are
        let base = try #require(mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), "mmap failed")
        #expect(base != MAP_FAILED)
        defer { munmap(base, size) }
        let address = UInt(bitPattern: base)
        func checksum() -> UInt64 {
            let view = UnsafeRawBufferPointer(start: base, count: size)
            return view.reduce(0) { $0 &+ UInt64($1) }
        }
        let expected = bytes.reduce(UInt64(0)) { $0 &+ UInt64($1) }
        #expect(checksum() == expected)
        let before = try #require(residentKiB(ofMappingAt: address))
        #expect(before >= 1000, "all 1 MiB was read: \(before) KiB resident")

        let report = ColdPages.release()
        #expect(report.mappings > 0 && report.refused == 0, "\(report)")
        let after = try #require(residentKiB(ofMappingAt: address))
        #expect(after < before / 4, "resident after the advice: \(after) KiB (before \(before) KiB)")
        // The advice only reclaims: the contents read back unchanged.
        #expect(checksum() == expected)
    }
}
