import Foundation
import Glibc

/// A client of the agent's test control socket (the protocol is in
/// Sources/MassageAgent/TestControlServer.swift), for the tests and
/// `fleet-bench pain`.
public final class TestControlClient {
    private let fd: Int32

    public init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FixtureError("socket(): errno \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes.prefix($0.count - 1)) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw FixtureError("cannot connect to \(path): errno \(errno)")
        }
        var timeout = timeval(tv_sec: 15, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Sends `line`, returns the reply's words; throws on `error …` unless `allowError`.
    public func call(_ line: String, allowError: Bool = false) throws -> [String] {
        let request = Array((line + "\n").utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
            throw FixtureError("test control: cannot send \"\(line)\"")
        }
        var reply: [UInt8] = []
        var byte: UInt8 = 0
        while reply.count < 4096 {
            guard read(fd, &byte, 1) == 1 else { throw FixtureError("test control: no reply to \"\(line)\"") }
            if byte == UInt8(ascii: "\n") { break }
            reply.append(byte)
        }
        let words = String(decoding: reply, as: UTF8.self).split(separator: " ").map(String.init)
        if words.first != "ok", !allowError { throw FixtureError("test control: \"\(line)\" → \(words.joined(separator: " "))") }
        return words
    }
}
