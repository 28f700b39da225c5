import Foundation
import MassageEngine
import Synchronization

/// What the controller said about itself at start-up.
public struct ControllerInfo: Sendable, Equatable {
    public var bootCounter: UInt16
    /// The controller's own pressure ceilings (mmHg).
    public var ceilingsMMHg: ZoneValues<Double>
    /// No new command for this long with pressure on, and the controller releases by itself.
    public var watchdogMilliseconds: Int
}

/// Counters of the link, for logs, telemetry and the benchmarks.
public struct LinkStatistics: Sendable, Equatable {
    public var transactions = 0
    public var timeouts = 0
    public var badFrames = 0
    public var exceptions = 0
    public var connectionErrors = 0
    /// Failures retried on the next tick without a fault (`LinkSettings.toleratedFailures`).
    public var retried = 0
    public var reconnects = 0
    /// Reads that returned a link fault to the engine.
    public var faultedReads = 0
    public var lastError: String?
    public var failures: Int { timeouts + badFrames + exceptions + connectionErrors }
}

/// The engine's `MassagerHardware` over Modbus RTU or TCP, on the register
/// map of `RegisterMap`: one read of the status block in `read`, one write
/// of the command block in `apply` and `releaseAll`.
///
/// Every call returns within the response timeout of the one transaction
/// it makes (or at once while the link is down): the engine calls it from
/// its 20 ms control tick. A read that fails, a controller that restarted
/// or changed identity, a command that was not delivered, or a fault the
/// controller latched are all reported as a `HardwareFault`, so the
/// engine's supervisor releases and latches `hardware_fault`; nothing
/// resumes by itself. A lost connection is re-opened by `read`, at most
/// once per backoff interval (100 ms doubling to 2 s).
public final class ModbusMassager: MassagerHardware {
    public let settings: LinkSettings
    /// What the controller reported when the link was opened.
    public let controller: ControllerInfo

    private struct State {
        /// nil while the link is down.
        var context: ModbusContext?
        var bootCounter: UInt16
        var sequence: UInt16 = 0
        var buffer = [UInt16](repeating: 0, count: Int(RegisterMap.tickReadCount))
        var last = SensorReadings()
        var statistics = LinkStatistics()
        var nextReconnect = ContinuousClock.now
        var backoffMilliseconds: Int
        /// A fault to report on the next read (a restart seen, a command not delivered).
        var pending: String?
        /// A command or release went out since the last read.
        var sentSinceRead = true
        /// Failed transactions in a row (reset by any success).
        var consecutiveFailures = 0
        /// Set when a reconnect found the controller's ceilings or watchdog
        /// changed: reported on every read, so the fault never reads healthy
        /// and cannot be acknowledged away; only a restart checks again.
        var incompatible: String?
    }

    private let state: Mutex<State>

    /// Opens the link and reads the controller's identity, version,
    /// ceilings and watchdog. Throws a `ModbusLinkError` naming the device or
    /// host and what was tried when the controller does not answer, or
    /// answers as something else.
    public init(settings: LinkSettings, attempts: Int = 3) throws(ModbusLinkError) {
        self.settings = settings
        var lastError = ModbusLinkError(.connection, "no attempt made")
        var opened: (ModbusContext, [UInt16])?
        for attempt in 0..<max(1, attempts) {
            if attempt > 0 { usleep(200_000) }
            do throws(ModbusLinkError) {
                let context = try ModbusContext(settings)
                try context.connect()
                var block = [UInt16](repeating: 0, count: Int(RegisterMap.startupReadCount))
                try context.read(0, count: RegisterMap.startupReadCount, into: &block)
                opened = (context, block)
                break
            } catch {
                if error.kind == .settings { throw error }
                lastError = error
            }
        }
        guard let (context, block) = opened else {
            throw ModbusLinkError(.connection, "the massager controller does not answer at \(settings): tried \(max(1, attempts)) times (connect, then read registers 0–\(RegisterMap.startupReadCount - 1)) with a \(settings.timeoutMilliseconds) ms response timeout; last error: \(lastError.message)")
        }
        guard block[Int(RegisterMap.identity)] == RegisterMap.identityMagic else {
            throw ModbusLinkError(.incompatible, "the device at \(settings) is not a massager controller: register 0 reads 0x\(String(block[0], radix: 16)), expected 0x\(String(RegisterMap.identityMagic, radix: 16))")
        }
        guard block[Int(RegisterMap.version)] == RegisterMap.mapVersion else {
            throw ModbusLinkError(.incompatible, "the controller at \(settings) uses register map version \(block[1]); this agent speaks version \(RegisterMap.mapVersion)")
        }
        controller = ControllerInfo(
            bootCounter: block[Int(RegisterMap.bootCounter)],
            ceilingsMMHg: ZoneValues { Double(block[Int(RegisterMap.ceiling($0))]) / 10 },
            watchdogMilliseconds: Int(block[Int(RegisterMap.watchdogMilliseconds)]))
        state = Mutex(State(context: context, bootCounter: controller.bootCounter, backoffMilliseconds: settings.minBackoffMilliseconds))
    }

    /// Refuses to run when the controller's ceilings are lower than the
    /// engine's in force: the agent would command pressures the controller
    /// clamps, or trip where the engine would not. See `ControllerCeilings`.
    public func check(limits: EngineLimits) throws(ModbusLinkError) {
        let problems = ControllerCeilings.problems(controller: controller.ceilingsMMHg, engine: limits)
        if !problems.isEmpty {
            throw ModbusLinkError(.incompatible, "the controller at \(settings) has lower ceilings than the agent: " + problems.joined(separator: "; "))
        }
    }

    public var statistics: LinkStatistics { state.withLock { $0.statistics } }

    /// Closes the link; later calls report it down and do not reconnect.
    public func close() {
        state.withLock { s in
            s.context = nil
            s.nextReconnect = .now + .seconds(86_400 * 365)
        }
    }

    // MARK: - MassagerHardware

    public func read(engineTime: Double) -> SensorReadings {
        state.withLock { s in
            if s.context == nil { Self.reconnect(&s, settings: settings, expected: controller) }
            guard let context = s.context else {
                return Self.faulted(&s, "modbus link: down (\(s.statistics.lastError ?? "not connected")); reconnecting")
            }
            // With no session the engine commands nothing; the controller
            // still gets zero demand every tick (release-all), which is what
            // clears its latches once the stop button is up.
            if !s.sentSinceRead { Self.write(&s, context, Self.releaseBody, what: "idle release-all") }
            s.sentSinceRead = false
            guard let context = s.context else {
                let detail = s.pending ?? "modbus link: down"
                s.pending = nil
                return Self.faulted(&s, detail)
            }
            s.statistics.transactions += 1
            do throws(ModbusLinkError) {
                try context.read(0, count: RegisterMap.tickReadCount, into: &s.buffer)
                s.consecutiveFailures = 0
            } catch {
                Self.failed(&s, error)
                if Self.retries(&s, settings: settings) {
                    if let pending = s.pending {
                        s.pending = nil
                        return Self.faulted(&s, pending)
                    }
                    return s.last  // the last good readings, at most `toleratedFailures` ticks old
                }
                return Self.faulted(&s, "modbus link: \(error.message)" + (s.consecutiveFailures > 1 ? " (\(s.consecutiveFailures) failed transactions in a row)" : ""))
            }
            let b = s.buffer
            var problems: [String] = []
            if let pending = s.pending { problems.append(pending); s.pending = nil }
            if let incompatible = s.incompatible { problems.append(incompatible) }
            if b[Int(RegisterMap.identity)] != RegisterMap.identityMagic || b[Int(RegisterMap.version)] != RegisterMap.mapVersion {
                problems.append("modbus link: the controller's identity changed (register 0 = 0x\(String(b[0], radix: 16)), version \(b[1]))")
            }
            let boot = b[Int(RegisterMap.bootCounter)]
            if boot != s.bootCounter {
                problems.append("modbus link: the controller restarted (boot counter \(s.bootCounter) → \(boot))")
                s.bootCounter = boot
            }
            let faults = b[Int(RegisterMap.faults)]
            var zone: Zone?
            for z in Zone.allCases where faults & RegisterMap.FaultBits.actuator(z) != 0 {
                zone = zone ?? z
                problems.append("controller: the \(z.rawValue) actuator does not follow its setpoint")
            }
            if faults & RegisterMap.FaultBits.watchdog != 0 { problems.append("controller: its watchdog released the outputs (no new command within \(controller.watchdogMilliseconds) ms)") }
            if faults & RegisterMap.FaultBits.overpressure != 0 { problems.append("controller: pressure above its own ceiling, it released the outputs") }
            if faults & RegisterMap.FaultBits.setpointClamped != 0 { problems.append("controller: a setpoint above its ceiling was written and clamped") }

            var r = SensorReadings()
            for z in Zone.allCases {
                r.pressuresMMHg[z] = RegisterMap.decodeSignedTenths(b[Int(RegisterMap.pressure(z))])
                r.pressureSamples[z] = UInt32(b[Int(RegisterMap.pressureSamples(z))])
            }
            r.motorTemperatureC = RegisterMap.decodeSignedTenths(b[Int(RegisterMap.motorTemperature)])
            r.temperatureSample = UInt32(b[Int(RegisterMap.temperatureSamples)])
            r.stopButtonPressed = b[Int(RegisterMap.status)] & RegisterMap.StatusBits.stopLatched != 0
                || faults & RegisterMap.FaultBits.stopButton != 0
            r.hardwareFault = problems.isEmpty ? nil : HardwareFault(zone: zone, detail: problems.joined(separator: "; "))
            s.last = r
            return r
        }
    }

    public func apply(_ command: ActuatorCommand) {
        var values = [UInt16](repeating: 0, count: Int(RegisterMap.commandCount))
        for z in Zone.allCases { values[Int(RegisterMap.setpoint(z) - RegisterMap.commandStart)] = RegisterMap.encodeTenths(command.pressuresMMHg[z]) }
        values[Int(RegisterMap.technique - RegisterMap.commandStart)] = RegisterMap.techniqueCode(command.technique)
        let duty = command.motorDuty.isFinite ? min(1, max(0, command.motorDuty)) : 0
        values[Int(RegisterMap.motorDuty - RegisterMap.commandStart)] = UInt16((duty * 1000).rounded())
        send(values, what: "command")
    }

    public func releaseAll() {
        send(Self.releaseBody, what: "release-all")
    }

    private static let releaseBody: [UInt16] = {
        var values = [UInt16](repeating: 0, count: Int(RegisterMap.commandCount))
        values[Int(RegisterMap.releaseAll - RegisterMap.commandStart)] = 1
        return values
    }()

    private func send(_ body: [UInt16], what: String) {
        state.withLock { s in
            s.sentSinceRead = true
            guard let context = s.context else { return }  // down: the controller's watchdog releases
            Self.write(&s, context, body, what: what)
        }
    }

    private static func write(_ s: inout State, _ context: ModbusContext, _ body: [UInt16], what: String) {
        s.sequence = s.sequence == UInt16.max ? 1 : s.sequence + 1
        var values = body
        values[Int(RegisterMap.sequence - RegisterMap.commandStart)] = s.sequence
        s.statistics.transactions += 1
        do throws(ModbusLinkError) {
            try context.write(RegisterMap.commandStart, values)
            s.consecutiveFailures = 0
        } catch {
            failed(&s, error)
            // Retried: the next tick writes a fresh command (or release-all) anyway.
            if !retries(&s, settings: context.settings) {
                s.pending = "modbus link: the \(what) was not delivered: \(error.message)"
            }
        }
    }

    /// Whether a failure just counted is retried on the next tick: the link
    /// is still up (a serial line after a bad frame or a lost answer) and
    /// fewer than `toleratedFailures` + 1 transactions failed in a row.
    private static func retries(_ s: inout State, settings: LinkSettings) -> Bool {
        s.consecutiveFailures += 1
        guard s.context != nil, s.consecutiveFailures <= settings.toleratedFailures else { return false }
        s.statistics.retried += 1
        return true
    }

    // MARK: - Link state

    private static func failed(_ s: inout State, _ error: ModbusLinkError) {
        s.statistics.lastError = error.message
        switch error.kind {
        case .timeout: s.statistics.timeouts += 1
        case .badFrame: s.statistics.badFrames += 1
        case .exception: s.statistics.exceptions += 1
        case .connection, .incompatible, .settings: s.statistics.connectionErrors += 1
        }
        // Over TCP a request that timed out may still sit in the
        // controller's socket and be acted on late: drop the connection
        // (and whatever is queued with it) and reconnect after the backoff.
        // A serial line has no queue to speak of: flush and go on.
        var isTCP = false
        if case .tcp = s.context?.settings.transport { isTCP = true }
        switch error.kind {
        case .timeout where !isTCP, .badFrame where !isTCP:
            // Throw away a late answer before the next request (a few ms at most).
            let settings = s.context?.settings
            s.context?.drain(quietMilliseconds: 2, maxMilliseconds: min(10, max(2, settings?.timeoutMilliseconds ?? 8)))
        case .exception: break
        case .timeout, .badFrame, .connection, .incompatible, .settings:
            s.context = nil  // closed and freed with the object
            s.nextReconnect = .now + .milliseconds(s.backoffMilliseconds)
        }
    }

    private static func faulted(_ s: inout State, _ detail: String) -> SensorReadings {
        s.statistics.faultedReads += 1
        var r = s.last
        r.hardwareFault = HardwareFault(zone: nil, detail: detail)
        return r
    }

    /// One bounded attempt, at most once per backoff interval: connect
    /// (bounded by the response timeout) and nothing else; the next read
    /// checks identity and boot counter.
    private static func reconnect(_ s: inout State, settings: LinkSettings, expected: ControllerInfo) {
        let now = ContinuousClock.now
        guard now >= s.nextReconnect else { return }
        do throws(ModbusLinkError) {
            let context = try ModbusContext(settings)
            try context.connect()
            // What was checked at start-up must still hold: a controller
            // replaced or reconfigured while the link was down may have
            // lower ceilings or a shorter watchdog than the agent accepted.
            var block = [UInt16](repeating: 0, count: Int(RegisterMap.startupReadCount))
            try context.read(0, count: RegisterMap.startupReadCount, into: &block)
            let ceilings = ZoneValues { Double(block[Int(RegisterMap.ceiling($0))]) / 10 }
            let watchdog = Int(block[Int(RegisterMap.watchdogMilliseconds)])
            if ceilings != expected.ceilingsMMHg || watchdog != expected.watchdogMilliseconds {
                let changed = Zone.allCases.filter { ceilings[$0] != expected.ceilingsMMHg[$0] }
                    .map { "\($0.rawValue) \(expected.ceilingsMMHg[$0]) → \(ceilings[$0]) mmHg" }
                    + (watchdog != expected.watchdogMilliseconds ? ["watchdog \(expected.watchdogMilliseconds) → \(watchdog) ms"] : [])
                s.incompatible = "modbus link: the controller's settings changed while the link was down (\(changed.joined(separator: ", "))); restart the agent to check them against its own"
            }
            s.context = context
            s.consecutiveFailures = 0
            s.statistics.reconnects += 1
            s.backoffMilliseconds = settings.minBackoffMilliseconds
        } catch {
            s.statistics.lastError = error.message
            s.statistics.connectionErrors += 1
            s.backoffMilliseconds = min(settings.maxBackoffMilliseconds, s.backoffMilliseconds * 2)
            // Jitter: a fleet whose controllers all restart does not retry in step.
            let jitter = Int.random(in: 0...max(1, s.backoffMilliseconds / 4))
            s.nextReconnect = now + .milliseconds(s.backoffMilliseconds + jitter)
        }
    }
}
