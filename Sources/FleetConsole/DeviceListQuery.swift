import Foundation

/// One page of the device list, filtered and sorted on the server (issue
/// 23, item 4; issue 24, item 3): what `GET /api/v1/devices` and the
/// dashboard's `/devices` page take from their query strings.
///
/// Every parameter is optional. `site`, `state` and `health` filter as they
/// always did; `q` keeps devices whose id or running program contains it
/// (case-insensitive); `sort` is a column (`site`, `device`, `state`,
/// `health`, `program`, `last_seen`), a leading `-` for descending order,
/// ties broken by site then device; `limit` (1…1000) and `offset` choose
/// the page. Bad input is a `bad_request` that names the parameter.
struct DeviceListQuery: Sendable, Equatable {
    static let maxLimit = 1000
    static let maxText = 64

    enum Column: String, CaseIterable, Sendable {
        case site, device, state, health, program
        case lastSeen = "last_seen"
    }

    var site: String?
    var state: DeviceState?
    var health: Health?
    var text: String?
    var sort: Column = .site
    var descending = false
    /// nil: every matching device (the API's unpaged form, kept for the
    /// clients written before paging).
    var limit: Int?
    var offset = 0

    /// Every device matching the three filters, unpaged.
    init(site: String? = nil, state: DeviceState? = nil, health: Health? = nil) {
        self.site = site
        self.state = state
        self.health = health
    }

    /// Parses `parameter name → value` (absent or empty: not given).
    init(_ value: (String) -> String?, defaultLimit: Int? = nil) throws(ConsoleError) {
        func given(_ name: String) -> String? { value(name).flatMap { $0.isEmpty ? nil : $0 } }
        site = given("site")
        if let s = given("state") {
            guard let parsed = DeviceState(rawValue: s) else {
                throw .badRequest("state: expected one of \(DeviceState.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(Self.clip(s))\"")
            }
            state = parsed
        }
        if let h = given("health") {
            guard let parsed = Health(rawValue: h) else { throw .badRequest("health: expected ok, warning or critical, got \"\(Self.clip(h))\"") }
            health = parsed
        }
        if let q = given("q") {
            guard q.count <= Self.maxText else { throw .badRequest("q: at most \(Self.maxText) characters, got \(q.count)") }
            text = q.lowercased()
        }
        if let s = given("sort") {
            let name = s.hasPrefix("-") ? String(s.dropFirst()) : s
            guard let column = Column(rawValue: name) else {
                throw .badRequest("sort: expected one of \(Column.allCases.map(\.rawValue).joined(separator: ", ")), optionally after a '-' for descending order, got \"\(Self.clip(s))\"")
            }
            sort = column
            descending = s.hasPrefix("-")
        }
        limit = defaultLimit
        if let l = given("limit") {
            guard let n = Int(l), (1...Self.maxLimit).contains(n) else { throw .badRequest("limit: expected an integer from 1 to \(Self.maxLimit), got \"\(Self.clip(l))\"") }
            limit = n
        }
        if let o = given("offset") {
            guard let n = Int(o), n >= 0 else { throw .badRequest("offset: expected an integer of 0 or more, got \"\(Self.clip(o))\"") }
            offset = n
            if limit == nil { limit = Self.maxLimit }
        }
    }

    static func clip(_ s: String) -> String { s.count > 40 ? String(s.prefix(40)) + "…" : s }

    /// The `sort` parameter that means this query's order.
    var sortParameter: String { (descending ? "-" : "") + sort.rawValue }

    /// One page of rows (`Row`: a `DeviceSummary`, or the console's own
    /// row before it is summarised: only the page's devices are).
    struct Page<Row: Sendable>: Sendable {
        var devices: [Row]
        /// Devices matching the filters, over every page.
        var total: Int
        var offset: Int
        var limit: Int?
        /// The offset of the next page; nil on the last.
        var nextOffset: Int?

        func map<T>(_ transform: (Row) throws -> T) rethrows -> Page<T> {
            Page<T>(devices: try devices.map(transform), total: total, offset: offset, limit: limit, nextOffset: nextOffset)
        }
    }

    /// Filters `all` (already limited to `site`, `state` and `health` by the
    /// core, and to what the token may see) by `q`, sorts and cuts the page.
    /// Compares the typed values (no key strings built per device: 10,000
    /// of them per request at the scale of issue 23).
    func page<Row: DeviceListRow>(of all: [Row]) -> Page<Row> {
        var rows = all
        if let text {
            rows = rows.filter { $0.device.lowercased().contains(text) || ($0.program?.lowercased().contains(text) ?? false) }
        }
        let column = sort, descending = descending
        /// The column's order: -1, 0 or 1 (nil sorts first, as before paging had a descending form).
        func compare(_ a: Row, _ b: Row) -> Int {
            func order<T: Comparable>(_ x: T, _ y: T) -> Int { x < y ? -1 : (y < x ? 1 : 0) }
            switch column {
            case .site: return order(a.site, b.site)
            case .device: return order(a.device, b.device)
            case .state: return order(a.state.rawValue, b.state.rawValue)
            case .health: return order(a.health.rawValue, b.health.rawValue)
            case .program: return order(a.program ?? "", b.program ?? "")
            case .lastSeen:
                switch (a.lastSeen, b.lastSeen) {
                case (nil, nil): return 0
                case (nil, _): return -1
                case (_, nil): return 1
                case let (x?, y?): return order(x, y)
                }
            }
        }
        rows.sort { a, b in
            let c = compare(a, b)
            if c != 0 { return descending ? c > 0 : c < 0 }
            return (a.site, a.device) < (b.site, b.device)
        }
        let total = rows.count
        guard let limit else { return Page(devices: rows, total: total, offset: 0, limit: nil, nextOffset: nil) }
        let start = min(offset, total), end = min(start + limit, total)
        return Page(devices: Array(rows[start..<end]), total: total, offset: offset, limit: limit, nextOffset: end < total ? end : nil)
    }
}

/// What the device list filters and sorts by.
protocol DeviceListRow: Sendable {
    var site: String { get }
    var device: String { get }
    var state: DeviceState { get }
    var health: Health { get }
    /// The running session's program.
    var program: String? { get }
    var lastSeen: Date? { get }
}

extension DeviceSummary: DeviceListRow {
    var program: String? { session?.program }
}

/// `GET /api/v1/devices`'s body: `devices` as it always was, and where the
/// page stands (`total`, `offset`, `limit`, `next_offset`; `limit` and
/// `next_offset` null when the whole list was asked for).
struct DeviceListReply: Encodable, Sendable {
    var devices: [DeviceSummary]
    var total: Int
    var offset: Int
    var limit: Int?
    var nextOffset: Int?

    init(_ page: DeviceListQuery.Page<DeviceSummary>) {
        devices = page.devices
        total = page.total
        offset = page.offset
        limit = page.limit
        nextOffset = page.nextOffset
    }

    enum CodingKeys: String, CodingKey {
        case devices, total, offset, limit
        case nextOffset = "next_offset"
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(devices, forKey: .devices)
        try c.encode(total, forKey: .total)
        try c.encode(offset, forKey: .offset)
        try c.encode(limit, forKey: .limit)
        try c.encode(nextOffset, forKey: .nextOffset)
    }
}
