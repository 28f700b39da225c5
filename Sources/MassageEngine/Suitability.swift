/// Whether a technique suits a target: the brief's "neglecting proper
/// technique" turned into a rule. Every refusal and every limit carries a
/// reason a person can read. docs/engine.md holds the same table (a test
/// checks that the two agree).
public enum Suitability: Sendable, Equatable, CustomStringConvertible {
    /// The technique suits the target at any intensity the ceiling allows.
    case suited
    /// The technique suits the target only gently: at most `maxIntensity`.
    case limited(maxIntensity: Int, reason: String)
    /// The technique must not be used on the target.
    case unsuited(reason: String)

    public var isAllowed: Bool {
        if case .unsuited = self { return false }
        return true
    }

    /// The highest intensity level the technique allows on the target (10 if unlimited, 0 if refused).
    public var maxIntensity: Int {
        switch self {
        case .suited: 10
        case .limited(let max, _): max
        case .unsuited: 0
        }
    }

    public var reason: String? {
        switch self {
        case .suited: nil
        case .limited(_, let reason), .unsuited(let reason): reason
        }
    }

    public var description: String {
        switch self {
        case .suited: "suited"
        case .limited(let max, let reason): "up to level \(max): \(reason)"
        case .unsuited(let reason): "refused: \(reason)"
        }
    }

    /// The rule for `technique` on `target`.
    public static func of(_ technique: Technique, on target: Target) -> Suitability {
        switch target {
        case .zone(let zone):
            return zoneRule(technique, zone)
        case .point(let point):
            let zoneRule = zoneRule(technique, point.zone)
            if case .unsuited = zoneRule { return zoneRule }
            if let refusal = pointRefusal(technique, point) { return .unsuited(reason: refusal) }
            if let cap = point.gentleCap, zoneRule.maxIntensity > cap.maxIntensity {
                return .limited(maxIntensity: cap.maxIntensity, reason: cap.reason)
            }
            return zoneRule
        }
    }

    /// Every (target, technique) pair with its rule, targets in `Target.all` order.
    public static var table: [(target: Target, technique: Technique, rule: Suitability)] {
        Target.all.flatMap { target in
            Technique.allCases.map { technique in (target, technique, of(technique, on: target)) }
        }
    }

    // MARK: - The rules

    private static func zoneRule(_ technique: Technique, _ zone: Zone) -> Suitability {
        switch (zone, technique) {
        // Thigh, calf and arch are muscle and padded soft tissue: every technique suits them.
        case (.thigh, _), (.calf, _), (.arch, _):
            return .suited

        case (.shin, .compression):
            return .limited(maxIntensity: 4, reason: "the shinbone lies just under the skin: strong steady pressure presses its sensitive lining (periosteum) against the bone and aggravates shin splints; gentle compression only")
        case (.shin, .kneading):
            return .limited(maxIntensity: 4, reason: "only the thin muscle beside the shinbone can be kneaded; firm kneading drags over the bone")
        case (.shin, .shiatsu):
            return .limited(maxIntensity: 4, reason: "firm thumb pressure over the shinbone hurts; gentle shiatsu only")
        case (.shin, .tapping):
            return .unsuited(reason: "percussion on bone just under the skin bruises its lining and aggravates shin splints and inflammation")
        case (.shin, .circular), (.shin, .rolling):
            return .suited

        case (.achilles, .compression):
            return .limited(maxIntensity: 3, reason: "the Achilles is a tendon over bone, not a muscle: a light squeeze only")
        case (.achilles, .kneading):
            return .unsuited(reason: "kneading grips and twists the Achilles tendon; it irritates the tendon and can inflame an injured one")
        case (.achilles, .tapping):
            return .unsuited(reason: "tapping jolts the Achilles tendon again and again; it irritates the tendon and risks injuring a weakened one")
        case (.achilles, .shiatsu):
            return .unsuited(reason: "deep thumb pressure pins the Achilles tendon against the heel bone")
        case (.achilles, .circular), (.achilles, .rolling):
            return .suited

        case (.heel, .kneading):
            return .unsuited(reason: "the heel is bone under a fat pad: there is no muscle to knead, kneading only shears the pad")
        case (.heel, .tapping):
            return .unsuited(reason: "percussion on the heel bone jars the plantar fascia where it attaches, the painful spot in plantar fasciitis")
        case (.heel, .compression), (.heel, .circular), (.heel, .rolling), (.heel, .shiatsu):
            return .suited
        }
    }

    /// A point is one spot: it is found with gentle compression, worked with
    /// shiatsu (point pressure), and otherwise with the techniques the brief
    /// pairs with it. Techniques that travel along a muscle leave the point.
    private static func pointRefusal(_ technique: Technique, _ point: AcupressurePoint) -> String? {
        if technique == .compression || technique == .shiatsu || point.pairedTechniques.contains(technique) {
            return nil
        }
        let paired = point.pairedTechniques.map(\.rawValue).joined(separator: " and ")
        let why: String
        switch technique {
        case .kneading, .rolling, .circular:
            why = "\(technique.rawValue) works an area of muscle and drifts off a point"
        case .tapping:
            why = "tapping on a point is for the sole (KI1), where the brief pairs it with shiatsu"
        case .compression, .shiatsu:
            why = ""
        }
        return "\(why); the brief works \(point.rawValue.uppercased()) with \(paired)"
    }
}

extension Suitability {
    /// The table as Markdown, exactly as docs/engine.md shows it.
    public static func markdownTable() -> String {
        var lines = ["| target | " + Technique.allCases.map(\.rawValue).joined(separator: " | ") + " |"]
        lines.append("| --- |" + String(repeating: " --- |", count: Technique.allCases.count))
        for target in Target.all {
            let cells = Technique.allCases.map { technique -> String in
                switch of(technique, on: target) {
                case .suited: "yes"
                case .limited(let max, _): "≤ \(max)"
                case .unsuited: "no"
                }
            }
            lines.append("| \(target.id) | " + cells.joined(separator: " | ") + " |")
        }
        return lines.joined(separator: "\n")
    }
}
