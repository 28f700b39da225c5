import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Launching one mosquitto process and waiting until it is ready.
extension MosquittoBroker {
    typealias LaunchOutcome = ServerProcess.LaunchOutcome

    /// Starts `mosquitto -c configFile` with stdout/stderr appended to
    /// `logFile`, under an orphan guard, and polls until it is ready: the
    /// "mosquitto version … running" line is in the log (when the config
    /// logs it) and every probe port accepts a TCP connection. Returns
    /// `.addressInUse` if it exited because a port was taken; throws with
    /// the log tail if it exited for another reason or missed `timeout`.
    static func launch(
        mosquitto: URL, configFile: URL, logFile: URL, probePorts: [Int], expectsReadyLine: Bool,
        timeout: Duration
    ) async throws -> LaunchOutcome {
        let (process, orphanGuard, offset) = try ChildLaunch.startLogged(
            mosquitto, arguments: ["-c", configFile.path], logFile: logFile, name: "broker")
        let pid = process.processIdentifier

        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        let portList = probePorts.map { "127.0.0.1:\($0)" }.joined(separator: ", ")
        while true {
            let alive = process.isRunning
            let log = FileText.read(logFile, from: offset)
            if !alive {
                orphanGuard.release()
                let excerpt = FileText.excerpt("mosquitto log", logFile, from: offset)
                if log.contains("Address already in use") {
                    return .addressInUse(excerpt)
                }
                let status = ExitStatus(of: process)
                throw FixtureError(
                    "mosquitto exited during start-up (\(status)); check its config \(configFile.path)"
                        + " (set FLEET_KEEP_TEST_DIRS=1 to keep it); \(excerpt)")
            }
            if !expectsReadyLine || hasReadyLine(log),
                probePorts.allSatisfy({ acceptsTCPConnections(port: $0) })
            {
                return .ready(Running(process: process, orphanGuard: orphanGuard))
            }
            if clock.now >= deadline {
                sendSignal(SIGKILL, to: pid)
                orphanGuard.release()
                throw FixtureError(
                    "mosquitto (pid \(pid)) did not accept connections on \(portList) within \(timeout); "
                        + "killed it. Config \(configFile.path); "
                        + FileText.excerpt("mosquitto log", logFile, from: offset))
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Whether `log` has mosquitto's "mosquitto version X running" line,
    /// logged once every listener is bound.
    static func hasReadyLine(_ log: String) -> Bool {
        log.split(separator: "\n").contains { line in
            line.hasSuffix(" running") && line.contains("mosquitto version")
        }
    }
}
