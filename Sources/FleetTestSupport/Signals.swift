#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `kill(2)`, under a name that types with a `kill()` method can call.
func sendSignal(_ signal: Int32, to pid: Int32) {
    _ = kill(pid, signal)
}
