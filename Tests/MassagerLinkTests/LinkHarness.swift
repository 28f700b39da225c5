import FleetTestSupport
import Foundation
import MassageAgent
import MassageEngine
import MassageEngineTesting
@testable import MassagerLink
import Synchronization

/// A reference controller on a loopback port, a `ModbusMassager` linked to
/// it and an engine driving it in real time: what massage-agent does, in
/// one process. `stop()` ends the driver and the controller.
final class LinkHarness: Sendable {
    /// Response timeout for tests: a loaded CI machine (2 cores, several
    /// builds) can hold a thread for longer than the 8 ms default.
    static let testTimeoutMilliseconds = 50

    let controller: ReferenceController
    let massager: ModbusMassager
    let hardware: GatedHardware
    let engine: MassageEngine
    let journal = Journal()
    private let driver = Mutex<Task<Void, Never>?>(nil)

    /// The pseudo-terminal line of an RTU harness.
    let line: PseudoSerialLine?

    /// Over Modbus TCP on loopback, or with `rtu` over Modbus RTU on a
    /// pseudo-terminal line at 115200 baud.
    init(options: ReferenceController.Options = LinkHarness.options(), rtu: Bool = false) throws {
        if rtu {
            let line = try PseudoSerialLine()
            self.line = line
            controller = try ReferenceController(rtuDevice: line.controllerDevice, options: options)
            massager = try ModbusMassager(settings: LinkSettings(
                transport: .rtu(device: line.agentDevice, baud: 115_200, parity: .none), unit: 1,
                timeoutMilliseconds: Self.testTimeoutMilliseconds))
        } else {
            line = nil
            controller = try ReferenceController(options: options)
            massager = try ModbusMassager(settings: LinkHarness.settings(port: controller.port))
        }
        hardware = GatedHardware(massager)
        let journal = self.journal
        engine = try MassageEngine(programs: ProgramLibrary(), hardware: hardware, clock: SystemWallClock(), storage: InMemoryEngineStorage(),
                                   eventObserver: { journal.append($0) })
    }

    static func options(watchdogMilliseconds: Int = 300) -> ReferenceController.Options {
        var o = ReferenceController.Options()
        o.watchdogMilliseconds = watchdogMilliseconds
        return o
    }

    static func settings(port: Int) -> LinkSettings {
        LinkSettings(transport: .tcp(host: "127.0.0.1", port: port), unit: 1, timeoutMilliseconds: testTimeoutMilliseconds)
    }

    /// Runs the engine in real time on its control thread.
    func startDriver() {
        let engine = self.engine
        driver.withLock { $0 = Task { await EngineDriver(engine: engine, realtimePriority: 10).run() } }
    }

    /// Starts a short custom session on the calf once the engine has readings.
    func startSession(seconds: Int = 3, intensity: Int = 4) async throws {
        try await waitUntil(timeout: .seconds(10), "the engine ticks") { engine.tickCount > 10 }
        try engine.start(.steps([StepSpec(target: "calf", technique: "compression", intensity: intensity, durationSeconds: seconds)]))
    }

    func stop() async {
        let task = driver.withLock { t in
            let task = t
            t = nil
            return task
        }
        task?.cancel()
        await task?.value
        massager.close()
        controller.stop()
        line?.close()
    }
}

/// The engine's events, in order.
final class Journal: Sendable {
    private let events = Mutex<[EngineEvent]>([])
    func append(_ e: EngineEvent) { events.withLock { $0.append(e) } }
    var all: [EngineEvent] { events.withLock { $0 } }
    var types: [String] { all.map(\.type) }
    var abortReasons: [AbortReason] {
        all.compactMap { if case .sessionAborted(let r) = $0.kind { r } else { nil } }
    }
    var raisedFaults: [Fault] {
        all.compactMap { if case .faultRaised(let f) = $0.kind { f } else { nil } }
    }
}

/// Forwards to the real driver until muted; muted, it sends nothing and
/// repeats the last reading: an agent that hangs with pressure on.
final class GatedHardware: MassagerHardware {
    let inner: any MassagerHardware
    private let state = Mutex<(muted: Bool, last: SensorReadings)>((false, SensorReadings()))
    private let faults = Mutex<[String]>([])

    /// Every hardware fault detail the driver reported, in order (the
    /// engine's latch shows only the first of a kind).
    var reportedFaults: [String] { faults.withLock { $0 } }

    init(_ inner: any MassagerHardware) { self.inner = inner }

    func mute() { state.withLock { $0.muted = true } }

    func read(engineTime: Double) -> SensorReadings {
        if let last = state.withLock({ $0.muted ? $0.last : nil }) { return last }
        let r = inner.read(engineTime: engineTime)
        state.withLock { $0.last = r }
        if let detail = r.hardwareFault?.detail { faults.withLock { $0.append(detail) } }
        return r
    }

    func apply(_ command: ActuatorCommand) {
        if !state.withLock({ $0.muted }) {
            _ = sent.withLock { $0.insert(ZoneValues { RegisterMap.encodeTenths(command.pressuresMMHg[$0]) }) }
            inner.apply(command)
        }
    }

    /// Every setpoint set the engine sent (tenths of mmHg, as written).
    private let sent = Mutex<Set<ZoneValues<UInt16>>>([])
    var sentSetpoints: Set<ZoneValues<UInt16>> { sent.withLock { $0 } }

    func releaseAll() {
        if !state.withLock({ $0.muted }) { inner.releaseAll() }
    }
}
