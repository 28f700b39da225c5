import FleetProtocol
import Foundation
import Synchronization

/// The last minutes of each device's session telemetry, in memory, for the
/// device page's live picture (issue 24, item 2): pressure per zone over
/// time and the steps the session went through.
///
/// Everything here came from a device, so everything is bounded: at most
/// `samplesPerDevice` samples and `stepsPerDevice` steps per device, at most
/// `maxDevices` devices (a device beyond that is not recorded), only the six zones the product knows (any other key
/// a device sends is left out), and names cut to 64 characters. Only
/// samples of a running or paused session are kept; a new session id
/// starts the device's history afresh. Nothing is persisted: a restarted
/// console starts with an empty picture.
final class TelemetryHistory: Sendable {
    static let zones = ["thigh", "calf", "shin", "achilles", "heel", "arch"]
    /// Two minutes at 1 s telemetry, ten at 5 s. With `maxDevices` this caps
    /// the whole at 1.2 million samples of 48 bytes (under 60 MB) even if
    /// every device of a 10,000-device fleet ran a session at once.
    static let samplesPerDevice = 120
    static let stepsPerDevice = 64
    static let maxDevices = 10_000

    struct Sample: Sendable, Equatable {
        var at: Date
        /// mmHg per zone of `zones`, in that order; NaN where the zone is
        /// not active. Inline (no allocation per sample).
        var pressure: SIMD8<Float>

        func pressure(of zone: Int) -> Double? { pressure[zone].isNaN ? nil : Double(pressure[zone]) }
    }

    /// A step of the session as it was seen: when it began and was last seen.
    struct Step: Sendable, Equatable {
        var index: Int
        var target: String
        var zone: String
        var technique: String
        var intensity: Int
        var breathingBPM: Int?
        var firstSeen: Date
        var lastSeen: Date
        var remainingSeconds: Double?
    }

    struct Device: Sendable {
        var sessionID: String?
        var program: String?
        var samples: [Sample] = []
        var steps: [Step] = []

        /// One message's sample, and its step: the last step seen again, or a new one.
        mutating func add(_ sample: Sample, step: Step?) {
            samples.append(sample)
            if samples.count > TelemetryHistory.samplesPerDevice { samples.removeFirst(samples.count - TelemetryHistory.samplesPerDevice) }
            guard let step else { return }
            if let i = steps.indices.last, steps[i].index == step.index, steps[i].target == step.target {
                steps[i].lastSeen = step.lastSeen
                steps[i].intensity = step.intensity
                steps[i].breathingBPM = step.breathingBPM
                steps[i].remainingSeconds = step.remainingSeconds
            } else {
                steps.append(step)
                if steps.count > TelemetryHistory.stepsPerDevice { steps.removeFirst(steps.count - TelemetryHistory.stepsPerDevice) }
            }
        }
    }

    private let devices = Mutex<[DeviceAddress: Device]>([:])

    /// Records one telemetry message of `address` that ingest applied.
    func record(_ address: DeviceAddress, _ t: Telemetry, at now: Date) {
        guard t.sessionState == .running || t.sessionState == .paused else { return }
        var pressure = SIMD8<Float>(repeating: .nan)
        for (i, zone) in Self.zones.enumerated() {
            if let p = t.pressureMMHg[zone], p.isFinite { pressure[i] = Float(min(max(p, 0), 1000)) }
        }
        let session = t.sessionID.map { String($0.prefix(64)) }
        let program = t.program.map { String($0.prefix(64)) }
        let step = t.step.map { s in
            Step(index: s.index, target: String(s.target.prefix(64)), zone: String(s.zone.prefix(64)), technique: String(s.technique.prefix(64)),
                 intensity: s.intensity, breathingBPM: t.breathingBPM, firstSeen: now, lastSeen: now, remainingSeconds: s.remainingSeconds)
        }
        devices.withLock { all in
            guard all[address] != nil || all.count < Self.maxDevices else { return }
            if all[address]?.sessionID != session || all[address] == nil {
                all[address] = Device(sessionID: session, program: program)
            }
            // In place (the dictionary's storage, not a copy of the device's
            // arrays): this runs for every telemetry message of the fleet.
            all[address]!.add(Sample(at: now, pressure: pressure), step: step)
        }
    }

    func history(_ address: DeviceAddress) -> Device? {
        devices.withLock { $0[address] }
    }

    var deviceCount: Int { devices.withLock { $0.count } }
}
