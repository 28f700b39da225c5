import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `kill(2)`, under a name that types with a `kill()` method can call.
func sendSignal(_ signal: Int32, to pid: Int32) {
    _ = kill(pid, signal)
}

/// State letter and parent pid from `/proc/<pid>/stat`; nil if there is
/// no such process.
func processState(_ pid: Int32) -> (state: Character, parent: Int32)? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let nameEnd = text.lastIndex(of: ")")
    else { return nil }
    let fields = text[text.index(after: nameEnd)...].split(separator: " ")
    guard fields.count >= 2, let state = fields[0].first, let parent = Int32(fields[1]) else { return nil }
    return (state, parent)
}

/// No such process, or a zombie: it has exited (its sockets and ports are
/// closed) whether or not Foundation has reaped it yet.
func processIsGone(_ pid: Int32) -> Bool {
    guard let state = processState(pid)?.state else { return true }
    return state == "Z" || state == "X"
}
