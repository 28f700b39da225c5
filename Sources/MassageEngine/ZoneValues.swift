/// One value per zone, stored inline (no dictionary, no allocation), so the
/// control tick can carry pressures and setpoints without touching the heap.
public struct ZoneValues<Value: Sendable>: Sendable {
    public var thigh: Value
    public var calf: Value
    public var shin: Value
    public var achilles: Value
    public var heel: Value
    public var arch: Value

    public init(repeating value: Value) {
        thigh = value; calf = value; shin = value
        achilles = value; heel = value; arch = value
    }

    public init(_ make: (Zone) throws -> Value) rethrows {
        thigh = try make(.thigh); calf = try make(.calf); shin = try make(.shin)
        achilles = try make(.achilles); heel = try make(.heel); arch = try make(.arch)
    }

    @inlinable
    public subscript(zone: Zone) -> Value {
        get {
            switch zone {
            case .thigh: thigh
            case .calf: calf
            case .shin: shin
            case .achilles: achilles
            case .heel: heel
            case .arch: arch
            }
        }
        set {
            switch zone {
            case .thigh: thigh = newValue
            case .calf: calf = newValue
            case .shin: shin = newValue
            case .achilles: achilles = newValue
            case .heel: heel = newValue
            case .arch: arch = newValue
            }
        }
    }

    public func map<T>(_ transform: (Value) throws -> T) rethrows -> ZoneValues<T> {
        try ZoneValues<T> { zone in try transform(self[zone]) }
    }

    /// The values as a dictionary keyed by zone id, for reports.
    public var byID: [String: Value] {
        Dictionary(uniqueKeysWithValues: Zone.allCases.map { ($0.rawValue, self[$0]) })
    }
}

extension ZoneValues: Equatable where Value: Equatable {}
extension ZoneValues: Hashable where Value: Hashable {}

extension ZoneValues: Codable where Value: Codable {
    public init(from decoder: any Decoder) throws {
        let values = try decoder.singleValueContainer().decode([String: Value].self)
        self = try ZoneValues { zone in
            guard let value = values[zone.rawValue] else {
                throw DecodingError.keyNotFound(
                    StringKey(zone.rawValue),
                    .init(codingPath: decoder.codingPath, debugDescription: "missing zone '\(zone.rawValue)'")
                )
            }
            return value
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(byID)
    }
}

struct StringKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
