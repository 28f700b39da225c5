import FleetTestSupport
import Foundation
import Testing

/// The end-to-end tests of `massage-agent`: the built executable as a
/// process, a real mosquitto, and a console played by ``FleetProbe``.
/// One test per "Done when" bullet of issue 4, plus start-up failures.
///
/// Serialized: every test runs sessions at `--speed 100` and measures their
/// timing, so they do not compete with each other for the two cores.
@Suite("massage-agent end to end", .serialized, .timeLimit(.minutes(3)), .tags(.e2e))
struct AgentEndToEndTests {}

// MARK: - The rig: one broker, one console probe, one agent

/// A broker on a free loopback port, a ``FleetProbe`` subscribed to
/// `massage/v1/#`, and one `massage-agent` that is online.
struct AgentRig {
    /// Simulated time runs this many times faster: sole-vitality (570 s of
    /// program) takes 5.7 s.
    static let speed: Double = 100

    let broker: MosquittoBroker
    let probe: FleetProbe
    let agent: AgentProcess

    var device: FleetProbe.Device { agent.device }

    /// Starts the rig, runs `body`, and tears everything down (also when
    /// `body` throws, in which case the agent's config and log tail are
    /// added to the error).
    static func run(
        broker brokerOptions: BrokerOptions = .init(),
        persistentProbe: Bool = false,
        agent configure: (inout AgentProcess.Options) -> Void = { _ in },
        _ body: (AgentRig) async throws -> Void
    ) async throws {
        let broker = try await MosquittoBroker.start(brokerOptions)
        defer { broker.stopNow() }
        let probe = try await FleetProbe.connect(to: broker, name: "console", persistentSession: persistentProbe)
        var options = AgentProcess.Options(
            site: "clinic-e2e", device: "massager-\(UUID().uuidString.prefix(6).lowercased())", speed: speed)
        configure(&options)
        let agent = try await AgentProcess.start(options, broker: broker, probe: probe)
        defer { agent.stopNow() }
        let rig = AgentRig(broker: broker, probe: probe, agent: agent)
        do {
            try await body(rig)
        } catch {
            await probe.close()
            throw FixtureError("\(error)\n\n\(agent.diagnostics())")
        }
        await probe.close()
    }

    /// Starts `program` and returns the session id (the reply must be ok).
    func startSession(_ program: String, id: String? = nil) async throws -> String {
        let reply = try await probe.send(action: "start_session", params: ["program": .string(program)], to: device, id: id)
        try #require(reply.ok, "start_session \(program) was refused: \(reply)")
        return try #require(reply.result?["session_id"]?.string, "start_session's result has no session_id: \(reply)")
    }

    /// `get_status`'s result.
    func status() async throws -> WireJSON {
        let reply = try await probe.send(action: "get_status", to: device)
        try #require(reply.ok, "get_status failed: \(reply)")
        return try #require(reply.result, "get_status has no result: \(reply)")
    }

    /// Every message the agent sent carries `ts`/`epoch`/`seq`, and its
    /// events form contiguous sequences per epoch, in order.
    func expectWellFormedWire(sourceLocation: SourceLocation = #_sourceLocation) {
        let agentKinds: Set<String> = ["status", "telemetry", "events", "usage", "config/reported"]
        let sent = probe.messages(for: device).filter { agentKinds.contains($0.kind ?? "") && !$0.payload.isEmpty }
        let envelope = sent.flatMap(FleetProbe.envelopeProblems)
        #expect(envelope.isEmpty, "envelope problems:\n\(envelope.joined(separator: "\n"))", sourceLocation: sourceLocation)
        let sequence = FleetProbe.sequenceProblems(probe.events(for: device))
        #expect(sequence.isEmpty, "event sequence problems:\n\(sequence.joined(separator: "\n"))", sourceLocation: sourceLocation)
    }
}

// MARK: - The built-in programs, read from Config/programs

/// A built-in program as its file under Config/programs states it, so the
/// expected events and usage follow the data, not a copy of it.
struct BuiltInProgram: Sendable {
    struct Step: Sendable {
        var target: String
        var technique: String
        var intensity: Int
        var durationSeconds: Int
    }

    var id: String
    var steps: [Step]

    var totalSeconds: Int { steps.reduce(0) { $0 + $1.durationSeconds } }

    /// How long the program takes at the rig's speed.
    var wallSeconds: Double { Double(totalSeconds) / AgentRig.speed }

    /// The zone each acupressure point lies in (docs/engine.md; the brief:
    /// GB34 below the knee on the shinbone, SP6 on the inner calf, KI1 at
    /// the centre of the sole).
    static let pointZones = ["gb34": "shin", "sp6": "calf", "ki1": "arch"]

    static func zone(of target: String) -> String { pointZones[target] ?? target }

    static func load(_ id: String) throws -> BuiltInProgram {
        let url = AgentProcess.builtInProgramsDirectory.appendingPathComponent("\(id).yaml")
        let text = try String(contentsOf: url, encoding: .utf8)
        var steps: [Step] = []
        var fileID: String?
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("id:") {
                fileID = line.dropFirst(3).trimmingCharacters(in: .whitespaces)
            } else if line.hasPrefix("- {"), line.hasSuffix("}") {
                var fields: [String: String] = [:]
                for pair in line.dropFirst(3).dropLast().split(separator: ",") {
                    let parts = pair.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                    if parts.count == 2 { fields[parts[0]] = parts[1] }
                }
                guard let target = fields["target"], let technique = fields["technique"],
                    let intensity = fields["intensity"].flatMap(Int.init),
                    let duration = fields["duration_s"].flatMap(Int.init)
                else { throw FixtureError("\(url.path): cannot read the step \(line)") }
                steps.append(Step(target: target, technique: technique, intensity: intensity, durationSeconds: duration))
            }
        }
        guard fileID == id, !steps.isEmpty else { throw FixtureError("\(url.path) does not hold program \(id) with steps") }
        return BuiltInProgram(id: id, steps: steps)
    }

    /// The ids of every file in Config/programs.
    static func builtInIDs() throws -> [String] {
        let files = try FileManager.default.contentsOfDirectory(atPath: AgentProcess.builtInProgramsDirectory.path)
        return files.filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted()
    }

    /// The usage one complete run of the program adds.
    var completedUsage: UsageFigures {
        var usage = UsageFigures()
        usage.started = 1
        usage.completed = 1
        for step in steps {
            let seconds = Double(step.durationSeconds)
            usage.byZone[BuiltInProgram.zone(of: step.target), default: 0] += seconds
            if BuiltInProgram.pointZones[step.target] != nil { usage.byPoint[step.target, default: 0] += seconds }
            usage.byTechnique[step.technique, default: 0] += seconds
            usage.byProgram[id, default: 0] += seconds
        }
        return usage
    }
}

// MARK: - Usage figures

/// The counters of a usage message, zeros left out, seconds to the
/// millisecond, so two of them compare with `==` and subtract.
struct UsageFigures: Equatable, Sendable, CustomStringConvertible {
    var started = 0
    var completed = 0
    var aborted: [String: Int] = [:]
    var byZone: [String: Double] = [:]
    var byPoint: [String: Double] = [:]
    var byTechnique: [String: Double] = [:]
    var byProgram: [String: Double] = [:]

    init() {}

    /// The figures of a usage message (all zero for nil: a device that has
    /// published no usage yet has used nothing).
    init(_ message: FleetProbe.Message?) {
        self.init(message?.json)
    }

    init(_ json: WireJSON?) {
        guard let json else { return }
        started = json["sessions"]?["started"]?.int ?? 0
        completed = json["sessions"]?["completed"]?.int ?? 0
        aborted = UsageFigures.counts(json["sessions"]?["aborted"])
        byZone = UsageFigures.seconds(json["seconds"]?["by_zone"])
        byPoint = UsageFigures.seconds(json["seconds"]?["by_point"])
        byTechnique = UsageFigures.seconds(json["seconds"]?["by_technique"])
        byProgram = UsageFigures.seconds(json["seconds"]?["by_program"])
    }

    private static func counts(_ json: WireJSON?) -> [String: Int] {
        (json?.object ?? [:]).compactMapValues { $0.int }.filter { $0.value != 0 }
    }

    private static func seconds(_ json: WireJSON?) -> [String: Double] {
        (json?.object ?? [:]).compactMapValues { $0.double.map(rounded) }.filter { $0.value != 0 }
    }

    static func rounded(_ value: Double) -> Double { (value * 1000).rounded() / 1000 }

    static func - (lhs: UsageFigures, rhs: UsageFigures) -> UsageFigures {
        func minus<V: AdditiveArithmetic>(_ a: [String: V], _ b: [String: V]) -> [String: V] {
            var out = a
            for (key, value) in b { out[key, default: .zero] -= value }
            return out.filter { $0.value != .zero }
        }
        var out = UsageFigures()
        out.started = lhs.started - rhs.started
        out.completed = lhs.completed - rhs.completed
        out.aborted = minus(lhs.aborted, rhs.aborted)
        out.byZone = minus(lhs.byZone, rhs.byZone).mapValues(rounded)
        out.byPoint = minus(lhs.byPoint, rhs.byPoint).mapValues(rounded)
        out.byTechnique = minus(lhs.byTechnique, rhs.byTechnique).mapValues(rounded)
        out.byProgram = minus(lhs.byProgram, rhs.byProgram).mapValues(rounded)
        return out
    }

    var description: String {
        "started \(started), completed \(completed), aborted \(aborted.sorted { $0.key < $1.key }), "
            + "by_zone \(byZone.sorted { $0.key < $1.key }), by_point \(byPoint.sorted { $0.key < $1.key }), "
            + "by_technique \(byTechnique.sorted { $0.key < $1.key }), by_program \(byProgram.sorted { $0.key < $1.key })"
    }
}

extension FleetProbe.Message {
    /// `seconds.by_program[id]` of a usage message, 0 when absent.
    func usageSeconds(program id: String) -> Double {
        self["seconds"]?["by_program"]?[id]?.double ?? 0
    }

    /// `sessions.aborted[reason]` of a usage message, 0 when absent.
    func abortedCount(_ reason: String) -> Int {
        self["sessions"]?["aborted"]?[reason]?.int ?? 0
    }
}
