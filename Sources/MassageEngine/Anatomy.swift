/// The six places on a leg where a massager acts (DESIGN.md §1). The raw
/// value is the id used on the wire and in program files (`calf`).
public enum Zone: String, CaseIterable, Codable, Sendable, Comparable, CustomStringConvertible {
    case thigh, calf, shin, achilles, heel, arch

    /// Position in `Zone.allCases`, used by `ZoneValues`.
    @inlinable public var index: Int {
        switch self {
        case .thigh: 0
        case .calf: 1
        case .shin: 2
        case .achilles: 3
        case .heel: 4
        case .arch: 5
        }
    }

    public var displayName: String {
        switch self {
        case .thigh: "Thigh"
        case .calf: "Calf"
        case .shin: "Shin"
        case .achilles: "Achilles tendon"
        case .heel: "Heel"
        case .arch: "Arch of the foot"
        }
    }

    /// What massaging the zone is for, in the product brief's words.
    public var purpose: String {
        switch self {
        case .thigh: "enhances circulation, reduces stiffness and aids muscle recovery"
        case .calf: "relieves tension and improves circulation, reducing leg cramps and fatigue"
        case .shin: "eases shin splints, reduces inflammation and speeds recovery after strenuous activity"
        case .achilles: "alleviates discomfort and improves flexibility in the ankle"
        case .heel: "helps with plantar fasciitis and foot pain, enhancing mobility"
        case .arch: "relieves foot strain, improves arch support and relaxes the entire leg"
        }
    }

    public var description: String { rawValue }

    public static func < (lhs: Zone, rhs: Zone) -> Bool { lhs.index < rhs.index }
}

/// The three acupressure points the brief names, each inside a zone.
public enum AcupressurePoint: String, CaseIterable, Codable, Sendable, CustomStringConvertible {
    case gb34, sp6, ki1

    /// Where the brief asks for gentle pressure at the point, the highest
    /// level any technique may use there, and why. GB34: "gentle pressure
    /// with circular motions" over the shinbone, just below the knee.
    public var gentleCap: (maxIntensity: Int, reason: String)? {
        switch self {
        case .gb34: (4, "the brief asks for gentle pressure at GB34, over the shinbone just below the knee")
        case .sp6, .ki1: nil
        }
    }

    /// The zone the point lies in: its pressure ceiling and suitability row apply.
    public var zone: Zone {
        switch self {
        case .gb34: .shin
        case .sp6: .calf
        case .ki1: .arch
        }
    }

    public var displayName: String {
        switch self {
        case .gb34: "GB34, gallbladder meridian point"
        case .sp6: "SP6, spleen meridian point"
        case .ki1: "KI1, kidney point"
        }
    }

    /// Where to find the point, as the brief describes it.
    public var location: String {
        switch self {
        case .gb34: "outer side of the shinbone, just below the knee"
        case .sp6: "inner side of the calf, about four finger-widths above the ankle bone"
        case .ki1: "centre of the sole"
        }
    }

    public var purpose: String {
        switch self {
        case .gb34: "alleviates knee and leg pain and improves joint mobility"
        case .sp6: "targets calf muscle tension, promoting relaxation and flexibility"
        case .ki1: "reduces foot and leg pain and boosts energy and vitality"
        }
    }

    /// The techniques the brief pairs with the point.
    public var pairedTechniques: [Technique] {
        switch self {
        case .gb34: [.compression, .circular]
        case .sp6: [.kneading, .rolling]
        case .ki1: [.tapping, .shiatsu]
        }
    }

    public var description: String { rawValue }
}

/// What a program step works on: a whole zone or one point. On the wire it
/// is the plain id (`calf`, `gb34`).
public enum Target: Hashable, Sendable, CustomStringConvertible {
    case zone(Zone)
    case point(AcupressurePoint)

    /// Every target, zones first, in a stable order.
    public static let all: [Target] = Zone.allCases.map(Target.zone) + AcupressurePoint.allCases.map(Target.point)

    /// The ids a step may name, for error messages.
    public static let knownIDs: [String] = all.map(\.id)

    /// Parses a wire id. Ids are lower-case; anything else is unknown.
    public init?(id: String) {
        if let zone = Zone(rawValue: id) {
            self = .zone(zone)
        } else if let point = AcupressurePoint(rawValue: id) {
            self = .point(point)
        } else {
            return nil
        }
    }

    public var id: String {
        switch self {
        case .zone(let zone): zone.rawValue
        case .point(let point): point.rawValue
        }
    }

    /// The zone whose actuator works this target.
    public var zone: Zone {
        switch self {
        case .zone(let zone): zone
        case .point(let point): point.zone
        }
    }

    public var point: AcupressurePoint? {
        if case .point(let point) = self { return point }
        return nil
    }

    public var description: String { id }
}

extension Target: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let id = try container.decode(String.self)
        guard let target = Target(id: id) else {
            throw DecodingError.dataCorruptedError(
                in: container,
                debugDescription: "unknown target '\(id)'; known: \(Target.knownIDs.joined(separator: ", "))"
            )
        }
        self = target
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(id)
    }
}
