import Foundation
import MassageEngine

/// The start-up rule between the two safety channels: the agent never runs
/// above the controller's ceilings. If the controller's ceiling for a zone
/// is lower than the engine's in force, the agent refuses to start (it does
/// not clamp silently: the person who configured the agent must see that
/// the board disagrees, and lower `limits.pressure_ceiling_mmhg`).
public enum ControllerCeilings {
    /// One message per zone where the controller is lower, naming the zone,
    /// both values and the key to change; empty when the agent may run.
    public static func problems(controller: ZoneValues<Double>, engine: EngineLimits) -> [String] {
        Zone.allCases.compactMap { zone in
            let board = controller[zone], agent = engine.ceiling(zone)
            guard board < agent else { return nil }
            return "\(zone.rawValue): the controller's ceiling is \(format(board)) mmHg, below the agent's \(format(agent)) mmHg (set limits.pressure_ceiling_mmhg.\(zone.rawValue) to \(format(board)) or less)"
        }
    }

    private static func format(_ v: Double) -> String {
        v == v.rounded() ? String(Int(v)) : String(format: "%.1f", v)
    }
}
