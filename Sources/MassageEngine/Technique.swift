import Foundation

/// How the massager moves (DESIGN.md §1). The raw value is the wire id.
public enum Technique: String, CaseIterable, Codable, Sendable, CustomStringConvertible {
    case compression, circular, kneading, rolling, tapping, shiatsu

    public static let knownIDs: [String] = allCases.map(\.rawValue)

    public var summary: String {
        switch self {
        case .compression: "gentle steady pressure"
        case .circular: "pressure moving in small circles"
        case .kneading: "alternating squeeze and release of a muscle"
        case .rolling: "a pressure wave rolling along the muscle"
        case .tapping: "quick rhythmic percussion"
        case .shiatsu: "firm point pressure held, released and repeated"
        }
    }

    /// Share of full motor power the technique draws at intensity 10. It
    /// drives the motor heating of the simulator (and of a real massager).
    public var motorLoad: Double {
        switch self {
        case .compression: 0.3
        case .circular: 0.6
        case .kneading: 0.7
        case .rolling: 0.6
        case .tapping: 0.9
        case .shiatsu: 0.8
        }
    }

    /// The technique's pressure pattern: the fraction (0…1] of the step's
    /// target pressure to command `t` seconds into the step. It never
    /// exceeds 1, so a pattern can never push pressure over the step's
    /// target (and so over a ceiling).
    @inlinable
    public func modulation(at t: Double) -> Double {
        switch self {
        case .compression:
            return 1
        case .circular:
            // 0.5 Hz circles, 80–100 %.
            return 0.9 + 0.1 * sin(2 * Double.pi * 0.5 * t)
        case .kneading:
            // 0.4 Hz squeeze and release, 50–100 %.
            return 0.75 + 0.25 * sin(2 * Double.pi * 0.4 * t)
        case .rolling:
            // 0.3 Hz wave, 60–100 %.
            return 0.8 + 0.2 * sin(2 * Double.pi * 0.3 * t)
        case .tapping:
            // 5 Hz: 40 % of each 200 ms period at full pressure, the rest at 30 %.
            let phase = t * 5 - (t * 5).rounded(.down)
            return phase < 0.4 ? 1 : 0.3
        case .shiatsu:
            // Press 3 s, ease 1 s.
            let phase = t.truncatingRemainder(dividingBy: 4)
            return phase < 3 ? 1 : 0.4
        }
    }

    public var description: String { rawValue }
}
