import Foundation
import MassageEngine

/// What one tick of the link costs: `ticks` ticks paced at 20 ms, each a
/// `read` and an `apply` through `ModbusMassager`, exactly as the engine
/// makes them; the round trip of the pair is timed on the monotonic clock.
public enum LinkBenchmark {
    public struct Figures: Sendable, CustomStringConvertible {
        public var ticks: Int
        public var p50Milliseconds: Double
        public var p99Milliseconds: Double
        public var maxMilliseconds: Double
        public var failures: Int
        public var description: String {
            String(format: "ticks %d, read+write per tick: p50 %.3f ms, p99 %.3f ms, max %.3f ms, link failures %d",
                   ticks, p50Milliseconds, p99Milliseconds, maxMilliseconds, failures)
        }
    }

    public static func run(settings: LinkSettings, ticks: Int) throws(ModbusLinkError) -> Figures {
        let link = try ModbusMassager(settings: settings)
        defer { link.close() }
        var samples: [Double] = []
        samples.reserveCapacity(ticks)
        var command = ActuatorCommand.idle
        command.pressuresMMHg.calf = 20
        command.technique = .compression
        command.motorDuty = 0.1
        let clock = ContinuousClock()
        var next = clock.now
        for i in 0..<max(1, ticks) {
            let start = clock.now
            _ = link.read(engineTime: Double(i) * 0.02)
            link.apply(command)
            let d = clock.now - start
            samples.append(Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) * 1e-15)
            next += .milliseconds(20)
            let wait = next - clock.now
            if wait > .zero { usleep(UInt32(wait.components.attoseconds / 1_000_000_000_000) + UInt32(wait.components.seconds) * 1_000_000) }
        }
        link.releaseAll()
        samples.sort()
        func pct(_ p: Double) -> Double { samples[min(samples.count - 1, Int(Double(samples.count) * p))] }
        return Figures(ticks: samples.count, p50Milliseconds: pct(0.5), p99Milliseconds: pct(0.99), maxMilliseconds: samples.last ?? 0,
                       failures: link.statistics.failures)
    }
}
