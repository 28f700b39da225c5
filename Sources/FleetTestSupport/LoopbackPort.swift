import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Ports this process already handed out, never handed out twice: two
/// brokers started by parallel tests cannot be given the same port, and a
/// stopped broker's port stays reserved for its restart.
private let handedOutPorts = Mutex<Set<Int>>([])

/// A TCP port on 127.0.0.1 that nothing listens on right now.
///
/// Binds port 0 on the loopback address, reads the port the kernel chose,
/// and closes the socket. Another process can still take the port before
/// the caller binds it; ``MosquittoBroker`` detects that ("Address already
/// in use") and retries with a new port. Within this process a port is
/// never returned twice.
public func freeLoopbackPort() throws -> Int {
    for _ in 0..<50 {
        let port = try bindEphemeralLoopbackPort()
        let isNew = handedOutPorts.withLock { $0.insert(port).inserted }
        if isNew {
            return port
        }
    }
    throw FixtureError(
        "the kernel kept choosing loopback ports this process already used; "
            + "check net.ipv4.ip_local_port_range")
}

/// Whether something accepts TCP connections on `host:port` right now
/// (connect, then close at once; gives up after one second).
public func acceptsTCPConnections(host: String = "127.0.0.1", port: Int) -> Bool {
    guard var address = ipv4Address(host, port: port) else { return false }
    let fd = socket(AF_INET, socketStreamType, 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 1, tv_usec: 0)
    _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    return result == 0
}

#if canImport(Glibc)
private let socketStreamType = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
#else
private let socketStreamType = SOCK_STREAM
#endif

private func ipv4Address(_ host: String, port: Int) -> sockaddr_in? {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(truncatingIfNeeded: port).bigEndian
    guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { return nil }
    return address
}

private func bindEphemeralLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, socketStreamType, 0)
    guard fd >= 0 else {
        throw FixtureError("socket() failed: \(String(cString: strerror(errno)))")
    }
    defer { close(fd) }
    var address = ipv4Address("127.0.0.1", port: 0)!
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard bound == 0 else {
        throw FixtureError(
            "cannot bind 127.0.0.1:0 to find a free port: \(String(cString: strerror(errno))); "
                + "is the loopback interface up?")
    }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            getsockname(fd, $0, &length)
        }
    }
    guard named == 0 else {
        throw FixtureError("getsockname() failed: \(String(cString: strerror(errno)))")
    }
    return Int(UInt16(bigEndian: address.sin_port))
}
