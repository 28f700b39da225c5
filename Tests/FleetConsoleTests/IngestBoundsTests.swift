#if canImport(Glibc)
import Glibc
#endif
@testable import FleetConsole
import FleetProtocol
import FleetTestSupport
import Foundation
import Logging
import Mosquitto
import Synchronization
import Testing

/// Issue 20, items 1, 2 and 4, at the level of the console's pure parts:
/// bounded work per gap, saturating sums, bounded metric labels, the
/// liveness that /healthz and the systemd watchdog read, and the
/// notification socket.
@Suite("Ingest bounds, liveness and metric labels")
struct IngestBoundsTests {
    static let address = try! DeviceAddress(site: "lab", device: "ghost")

    @Test("a gap of 2^53 events records the first 1,000 missing seqs and returns at once, instead of walking the whole range")
    func hugeGapIsBoundedWork() {
        var model = FleetModel()
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            model.addHoles(Self.address, epoch: 3, 2..<ProtocolLimits.maxInteger)
            model.addHoles(Self.address, epoch: 4, 1..<UInt64.max)
        }
        #expect(elapsed < .seconds(1), "took \(elapsed)")
        #expect(model.holes[Self.address]?.count == FleetModel.maxHolesPerDevice)
        #expect(model.holes[Self.address]?.contains(EventKey(epoch: 3, seq: 2)) == true)
    }

    @Test("a jump of more than a million events is implausible; up to a million is a gap")
    func implausibleJump() {
        #expect(FleetModel.implausibleJump(.gap(missing: FleetModel.maxEventGap)) == nil)
        #expect(FleetModel.implausibleJump(.gap(missing: FleetModel.maxEventGap + 1)) == FleetModel.maxEventGap + 1)
        #expect(FleetModel.implausibleJump(.newEpoch(missing: ProtocolLimits.maxInteger - 1)) == ProtocolLimits.maxInteger - 1)
        #expect(FleetModel.implausibleJump(.newEpoch(missing: 0)) == nil)
        #expect(FleetModel.implausibleJump(.next) == nil && FleetModel.implausibleJump(.notNewer) == nil)
    }

    @Test("usage totals saturate at 2^53 instead of trapping, however often a device resets its ledger")
    func usageSumsSaturate() {
        let max = ProtocolLimits.maxInteger
        let huge = Usage(sessions: SessionCounts(started: max, completed: max, aborted: ["pain_signal": max]),
                         seconds: UsageSeconds(byZone: ["calf": max]), outboxDropped: max)
        var total = Usage()
        for _ in 0..<3 { total = total.adding(huge) }
        #expect(total.sessions.started == max && total.sessions.completed == max && total.outboxDropped == max)
        #expect(total.sessions.aborted["pain_signal"] == max && total.seconds.byZone["calf"] == max)
        var day = UsageDay(site: "lab", day: "2025-03-01", sessions: SessionCounts(), minutes: [:])
        for _ in 0..<3 { day.add(huge) }
        #expect(day.sessions.started == max && day.sessions.aborted["pain_signal"] == max)
        #expect(UInt64.saturatingSum(.max, .max) == max)
        #expect(max.nextVersion == max && UInt64(41).nextVersion == 42)
        #expect(Int.saturatingSum(.max, 1) == .max)
    }

    @Test("an abort reason the contract does not define is the label `other`; the label set stays bounded")
    func abortReasonLabels() {
        let metrics = ConsoleMetrics()
        metrics.aborted("pain_signal")
        metrics.aborted("evil\"} 1\nfleet_injected_total 1\n#")
        for i in 0..<500 { metrics.aborted("made-up-\(i)") }
        let text = metrics.text()
        #expect(text.contains(#"fleet_session_aborts_total{reason="pain_signal"} 1"#), "\(text)")
        #expect(text.contains(#"fleet_session_aborts_total{reason="other"} 501"#), "\(text)")
        #expect(!text.contains("fleet_injected_total") && !text.contains("made-up"), "\(text)")
        let series = text.split(separator: "\n").filter { $0.hasPrefix("fleet_session_aborts_total{") }
        #expect(series.count == 2, "\(series)")
    }

    @Test("sites beyond the configured ones and 100 others share the label `_other`")
    func siteLabelsAreBounded() {
        let metrics = ConsoleMetrics()
        #expect(metrics.siteLabel("clinic-north", configured: ["clinic-north"]) == "clinic-north")
        let labels = (0..<150).map { metrics.siteLabel("site-\($0)", configured: ["clinic-north"]) }
        #expect(Set(labels).count == ConsoleMetrics.maxUnconfiguredSiteLabels + 1)
        #expect(labels.last == "_other" && labels.first == "site-0")
        #expect(metrics.siteLabel("site-0", configured: []) == "site-0", "a site keeps its label")
    }

    @Test("label values are escaped in /metrics: backslash, quote and newline")
    func labelValuesAreEscaped() {
        let metrics = ConsoleMetrics()
        metrics.setDevices(site: "a\\b\"c\nd", counts: [("idle", 1)])
        #expect(metrics.text().contains(#"fleet_devices{site="a\\b\"c\nd",state="idle"} 1"#), "\(metrics.text())")
    }

    @Test("liveness: ingest is stalled while one message takes longer than the limit, healthy when idle; the store fails after commits fail long enough")
    func livenessReports() {
        let liveness = Liveness(stallAfter: .milliseconds(100), storeFailingAfter: .milliseconds(100))
        #expect(liveness.report().healthy)
        // The report is read at a given instant: no waiting for real time to pass.
        let (early, late) = liveness.applying { () -> (Liveness.Report, Liveness.Report) in
            let now = ContinuousClock.now
            return (liveness.report(now: now), liveness.report(now: now + .milliseconds(150)))
        }
        #expect(!early.ingestStalled && late.ingestStalled && late.ingestBusySeconds >= 0.15, "a message applied for 100 ms+ shows as stalled: \(late)")
        let after = liveness.report(now: .now + .seconds(60))
        #expect(!after.ingestStalled && after.applied == 1 && after.ingestBusySeconds == 0, "idle is healthy, however long")

        liveness.commitFailed()
        #expect(!liveness.report().storeFailing, "one failure is not yet failing")
        #expect(liveness.report(now: .now + .milliseconds(150)).storeFailing, "failing for 150 ms")
        liveness.commitSucceeded()
        #expect(liveness.report(now: .now + .seconds(60)).healthy && liveness.report().commits == 1)
    }

    @Test("systemd notifications reach NOTIFY_SOCKET as datagrams, for a path and an abstract name; WATCHDOG_USEC is halved")
    func systemdNotifications() throws {
        #expect(SystemdNotifier(environment: [:]) == nil)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": "relative"]) == nil)
        #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "30000000"]) == .seconds(15))
        #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"]) == nil)
        #expect(SystemdNotifier.watchdogInterval(environment: [:]) == nil)

        let path = FileManager.default.temporaryDirectory.appendingPathComponent("notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        for name in [path, "@massagefleet-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"] {
            let receiver = try NotifyReceiver(name)
            defer { receiver.close() }
            let notifier = try #require(SystemdNotifier(environment: ["NOTIFY_SOCKET": name]))
            #expect(notifier.send("READY=1"))
            #expect(notifier.send("WATCHDOG=1"))
            #expect(receiver.receive() == "READY=1")
            #expect(receiver.receive() == "WATCHDOG=1")
        }
    }
}

/// A datagram socket bound where systemd's would be (`NOTIFY_SOCKET`), for
/// tests: a path, or `@name` in the abstract namespace.
final class NotifyReceiver: Sendable {
    let fd: Int32
    let path: String?

    init(_ name: String, timeoutSeconds: Int = 5) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw FixtureError("socket: errno \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(name.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t((MemoryLayout<sockaddr_un>.offset(of: \.sun_path) ?? 2) + bytes.count + (abstract ? 0 : 1))
        path = abstract ? nil : name
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0 else { throw FixtureError("bind \(name): errno \(errno)") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The next datagram as text, nil after the timeout.
    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buffer, buffer.count, 0)
        return n < 0 ? nil : String(decoding: buffer[..<n], as: UTF8.self)
    }

    /// Every datagram waiting now, without blocking.
    func drain() -> [String] {
        var out: [String] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            guard n >= 0 else { return out }
            out.append(String(decoding: buffer[..<n], as: UTF8.self))
        }
    }

    func close() {
        _ = Glibc.close(fd)
        if let path { unlink(path) }
    }
}

/// The fuzz-ingest seed corpus (Tests/Fuzz/Corpus/fuzz-ingest), replayed in
/// the ordinary test run the way the fuzz target feeds it: byte 0 picks the
/// topic (see Tests/Fuzz/Sources/fuzz-ingest). The `bound-*` seeds hold the
/// boundary integers and doubles of issue 20: each side of 2^53, UInt64.max,
/// 2^64, Int.max, 1e308 and 1e400. Before the bounds, `bound-usage-03`
/// (UInt64.max after a reset) trapped the console.
@Suite("Fuzz corpus: console ingest")
struct IngestFuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/Corpus/fuzz-ingest")

    @Test("every seed is ingested without a trap; out-of-bounds numbers are refused, and nothing the console holds exceeds 2^53")
    func replay() async throws {
        let directory = try TemporaryDirectory(prefix: "ingest-corpus")
        var logger = Logger(label: "ingest-corpus")
        logger.logLevel = .critical
        let core = try await ConsoleCore(configuration: ConsoleConfiguration(databasePath: directory.file("console.sqlite").path), logger: logger)
        let files = try FileManager.default.contentsOfDirectory(at: Self.corpus, includingPropertiesForKeys: nil)
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
        #expect(files.filter { $0.lastPathComponent.hasPrefix("bound-") }.count >= 30)
        let kinds = ["status", "telemetry", "events", "usage", "config/reported", "config/desired"]
        let addresses = [("s1", "d1"), ("s1", "d2"), ("s2", "d1"), ("s2", "d-2")]
        for file in files {
            let bytes = Array(try Data(contentsOf: file))
            guard let selector = bytes.first else { continue }
            var payload = Array(bytes.dropFirst())
            let mode = Int(selector & 0x07)
            let (site, device) = addresses[Int(selector >> 4) & 0x03]
            let topic: String
            switch mode {
            case 0..<kinds.count: topic = "massage/v1/\(site)/\(device)/\(kinds[mode])"
            case 6: topic = core.ingest.topics.replyTopic
            default:
                let line = payload.firstIndex(of: UInt8(ascii: "\n")) ?? payload.endIndex
                topic = String(decoding: payload[..<line], as: UTF8.self)
                payload = Array(payload[min(line + 1, payload.endIndex)...])
            }
            core.ingest.receive(MQTTMessage(topic: topic, payload: payload, qos: .atLeastOnce, retain: selector & 0x08 != 0))
        }
        await core.persistence.flushNow(includingDevices: true)
        await core.healthMonitor.evaluateHealth(now: Date())
        let admin = Principal(name: "test", role: .admin)
        let usage = try core.queries.usage(for: admin)
        for (site, total) in usage.totals {
            let counters = [total.sessions.started, total.sessions.completed, total.outboxDropped] + Array(total.sessions.aborted.values) + Array(total.seconds.byZone.values)
            #expect(counters.allSatisfy { $0 <= ProtocolLimits.maxInteger }, "\(site): \(total)")
        }
        for summary in try core.queries.devices(for: admin) {
            _ = try await core.queries.device(site: summary.site, device: summary.device, for: admin)
        }
        let text = core.metricsText
        #expect(text.contains("fleet_ingest_sequence_faults_total 2"), "bound-events-02 and -06 are device faults:\n\(text)")
        #expect(core.health().status == "ok")
    }
}
