import FleetTestSupport
import Foundation
import Glibc
import Testing
@testable import MassageAgent

// Serialized: `release()` advises the whole process, so one test's call would
// take the pages another test has just read and is about to count.
@Suite("Giving start-up pages back to the kernel", .serialized)
struct ColdPagesTests {
    @Test("private file-backed mappings are candidates; writable ones are marked")
    func candidates() {
        let maps = """
            5630044ee000-563004cd8000 r-xp 00000000 fe:00 5390744                    /usr/bin/massage-agent
            563004cd9000-563004d0b000 r--p 007ea000 fe:00 5390744                    /usr/bin/massage-agent
            563004d0b000-563004d6d000 rw-p 0081c000 fe:00 5390744                    /usr/bin/massage-agent
            56303343a000-56303345b000 rw-p 00000000 00:00 0                          [heap]
            7f5c58021000-7f5c5c000000 ---p 00000000 00:00 0
            7f5c70000000-7f5c70001000 r--p 00000000 fe:00 42                         /tmp/with space.bin
            7f5c71000000-7f5c71001000 r--p 00000000 fe:00 43                         /tmp/gone.bin (deleted)
            7f5c72000000-7f5c72001000 rw-s 00000000 00:01 44                         /dev/shm/shared
            7ffd1a5f2000-7ffd1a5f6000 r--p 00000000 00:00 0                          [vvar]
            7ffd1a5f6000-7ffd1a5f8000 r-xp 00000000 00:00 0                          [vdso]
            """
        let found = ColdPages.candidates(in: maps)
        #expect(found == [
            .init(start: 0x5630_044e_e000, end: 0x5630_04cd_8000, path: "/usr/bin/massage-agent"),
            .init(start: 0x5630_04cd_9000, end: 0x5630_04d0_b000, path: "/usr/bin/massage-agent"),
            .init(start: 0x5630_04d0_b000, end: 0x5630_04d6_d000, path: "/usr/bin/massage-agent", writable: true),
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
        let size = 1 << 20
        let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let mapping = try PrivateFileMapping(writing: bytes, in: dir, protection: PROT_READ)
        defer { withExtendedLifetime(mapping) {} }  // the views below borrow its pages
        let base = mapping.base, address = mapping.address
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

    @Test("of a writable mapping, pages the process wrote are never advised")
    func unwrittenRuns() {
        let present: UInt64 = 1 << 63, file: UInt64 = 1 << 61
        let read = present | file, written = present, absent: UInt64 = 0
        #expect(ColdPages.unwrittenRuns([]) == [])
        #expect(ColdPages.unwrittenRuns([read, absent, read]) == [0..<3])
        #expect(ColdPages.unwrittenRuns([written, written]) == [])
        #expect(ColdPages.unwrittenRuns([read, written, absent, read, written]) == [0..<1, 2..<4])
        #expect(ColdPages.unwrittenRuns([written, read, read]) == [1..<3])
    }

    @Test("of a read-only mapping, only pages still mapped from the file are unmapped, never a private copy")
    func mappedFileRuns() {
        let present: UInt64 = 1 << 63, file: UInt64 = 1 << 61
        let read = present | file, copied = present, absent: UInt64 = 0
        #expect(ColdPages.mappedFileRuns([]) == [])
        #expect(ColdPages.mappedFileRuns([absent, copied]) == [])
        #expect(ColdPages.mappedFileRuns([read, copied, absent, read, read]) == [0..<1, 3..<5])
        #expect(ColdPages.mappedFileRuns([copied, read, read, absent]) == [1..<3])
    }

    @Test("pages another process maps too leave this one's resident set, and read back the same")
    func sharedPages() async throws {
        try #require(sysconf(Int32(_SC_PAGESIZE)) == 4096)
        // A program run from a copy of its file maps that file's pages in
        // the child; the kernel will not page those out for this process.
        let dir = try TemporaryDirectory(prefix: "cold-pages")
        let program = try #require(["/usr/bin/sleep", "/bin/sleep"].first { FileManager.default.isExecutableFile(atPath: $0) })
        let path = dir.url.appendingPathComponent("sleep").path
        try FileManager.default.copyItem(atPath: program, toPath: path)
        let child = Process()
        child.executableURL = URL(fileURLWithPath: path)
        child.arguments = ["60"]
        try child.run()
        // SIGKILL: a test process may ignore SIGTERM, and its children inherit that.
        defer { kill(child.processIdentifier, SIGKILL); child.waitUntilExit() }
        try await waitUntil(timeout: .seconds(10), "the child maps its program's code") {
            ((try? ProcessStatistics.residentCodePages(child.processIdentifier)) ?? []).isEmpty == false
        }

        let expected = try Data(contentsOf: URL(fileURLWithPath: path))
        let mapping = try PrivateFileMapping(path, protection: PROT_READ)
        defer { withExtendedLifetime(mapping) {} }  // the views below borrow its pages
        let pages = mapping.size / 4096, address = mapping.address
        let view = UnsafeRawBufferPointer(start: mapping.base, count: mapping.size)
        #expect(view.elementsEqual(expected))
        #expect(try present(address, pages: pages).allSatisfy { $0 }, "every page was read")

        let report = ColdPages.release()
        #expect(report.refused == 0 && report.unmappedBytes > 0, "\(report)")
        let still = try present(address, pages: pages).filter { $0 }.count
        #expect(still == 0, "\(still) of \(pages) pages still mapped")
        #expect(view.elementsEqual(expected), "the contents read back changed")
    }

    @Test("relocated data (written, then made read-only) keeps what was written")
    func privateCopies() throws {
        try #require(sysconf(Int32(_SC_PAGESIZE)) == 4096)
        let dir = try TemporaryDirectory(prefix: "cold-pages")
        let pages = 16
        // As the loader does with RELRO: a private writable mapping, written,
        // then made read-only.
        let mapping = try PrivateFileMapping(writing: [UInt8](repeating: 0x11, count: pages * 4096), in: dir, protection: PROT_READ | PROT_WRITE)
        defer { withExtendedLifetime(mapping) {} }  // the views below borrow its pages
        let view = UnsafeMutableRawBufferPointer(start: mapping.base, count: mapping.size)
        var sum = 0
        for page in 0..<pages {
            if page % 2 == 0 { view[page * 4096] = 0xA5 } else { sum += Int(view[page * 4096]) }  // the others only read
        }
        #expect(mprotect(mapping.base, mapping.size, PROT_READ) == 0)
        #expect(try present(mapping.address, pages: pages).allSatisfy { $0 }, "every page was touched (sum \(sum))")

        let report = ColdPages.release()
        #expect(report.refused == 0, "\(report)")
        let after = try present(mapping.address, pages: pages)
        for page in 0..<pages {
            if page % 2 == 0 {
                #expect(after[page] && view[page * 4096] == 0xA5, "written page \(page) lost what was written")
            } else {
                #expect(!after[page], "read page \(page) still mapped")
                #expect(view[page * 4096] == 0x11, "read page \(page)")
            }
        }
    }

    /// Whether each page of `count` pages at `address` is mapped (resident), from /proc/self/pagemap.
    func present(_ address: UInt, pages count: Int) throws -> [Bool] {
        let pagemap = try #require(FileHandle(forReadingAtPath: "/proc/self/pagemap"))
        defer { try? pagemap.close() }
        let mapping = ColdPages.Mapping(start: address, end: address + UInt(count) * 4096, path: "")
        let entries = try #require(ColdPages.pagemapEntries(pagemap, mapping, pageSize: 4096))
        return entries.map { $0 >> 63 == 1 }
    }

    @Test("a writable file mapping gives back the pages it only read, and keeps the ones it wrote")
    func writableMapping() throws {
        try #require(sysconf(Int32(_SC_PAGESIZE)) == 4096)
        let dir = try TemporaryDirectory(prefix: "cold-pages")
        let pages = 64
        let bytes = (0..<pages * 4096).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        // A private writable mapping, as a binary's data segment is.
        let mapping = try PrivateFileMapping(writing: bytes, in: dir, protection: PROT_READ | PROT_WRITE)
        defer { withExtendedLifetime(mapping) {} }  // the views below borrow its pages
        let view = UnsafeMutableRawBufferPointer(start: mapping.base, count: mapping.size)
        var sum: UInt64 = 0
        for page in 0..<pages { sum &+= UInt64(view[page * 4096]) }  // read every page
        for page in stride(from: 0, to: pages, by: 2) { view[page * 4096 + 1] = 0xA5 }  // write every other one
        let address = mapping.address
        #expect(try present(address, pages: pages).allSatisfy { $0 }, "every page was touched (sum \(sum))")

        let report = ColdPages.release()
        #expect(report.refused == 0, "\(report)")
        let after = try present(address, pages: pages)
        let writtenKept = stride(from: 0, to: pages, by: 2).allSatisfy { after[$0] }
        let readGone = stride(from: 1, to: pages, by: 2).filter { after[$0] }.count
        #expect(writtenKept, "a page the process wrote was advised away")
        #expect(readGone <= pages / 8, "\(readGone) of \(pages / 2) read-only pages still mapped")
        // Nothing changed: written bytes and the file's bytes read back.
        for page in 0..<pages {
            #expect(view[page * 4096 + 1] == (page % 2 == 0 ? 0xA5 : bytes[page * 4096 + 1]), "page \(page)")
            if page % 2 == 1 { #expect(view[page * 4096] == bytes[page * 4096]) }
        }
    }
}

/// A file mapped privately, as the loader maps a binary; unmapped and closed
/// when the last reference goes.
final class PrivateFileMapping {
    let base: UnsafeMutableRawPointer
    let size: Int
    private let fd: Int32
    var address: UInt { UInt(bitPattern: base) }

    /// `bytes` written to a file in `dir`, then mapped.
    convenience init(writing bytes: [UInt8], in dir: TemporaryDirectory, protection: Int32) throws {
        let path = dir.url.appendingPathComponent("mapped-\(UUID().uuidString).bin").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        try self.init(path, protection: protection)
    }

    init(_ path: String, protection: Int32) throws {
        fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw MappingError("open \(path)") }
        size = Int(lseek(fd, 0, SEEK_END))
        // fsync: clean pages, as a binary's are.
        let base = size > 0 && fsync(fd) == 0 ? mmap(nil, size, protection, MAP_PRIVATE, fd, 0) : nil
        guard let base, base != MAP_FAILED else {
            let error = size > 0 ? MappingError("map \(path)") : MappingError(path, "is empty")
            close(fd)
            throw error
        }
        self.base = base
    }

    deinit {
        munmap(base, size)
        close(fd)
    }

    struct MappingError: Error, CustomStringConvertible {
        let description: String
        init(_ what: String, _ problem: String = String(cString: strerror(errno))) { description = "\(what): \(problem)" }
    }
}
