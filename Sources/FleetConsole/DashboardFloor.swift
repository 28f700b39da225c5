import FleetProtocol
import Foundation

/// The overview's live floor (issue 24, item 3): one tile per device of each
/// site a token may see, with its state as a colour and a word, the program,
/// the time left in the step, and a pain lockout or fault when there is one.
/// Rendered by the overview page and sent again by `/events/overview`.
///
/// The page shows at most `maxTiles` tiles over all its sites, shared
/// fairly (`allowances`): a site with fewer devices than its share shows
/// them all and leaves the rest to the others. Each site shows its first
/// devices in device order; the rest are counted and left to the paged
/// devices list. So neither one huge site nor a thousand small ones (a maker
/// hosting every customer's fleet) make the page, and every live update,
/// grow without bound: at 10,000 devices a floor of 1,000 tiles took about
/// 26 ms of the console's CPU to render per page (issue 23).
enum DashboardFloor {
    static let maxTiles = 500

    struct Tile: Sendable, Equatable {
        var site: String
        var device: String
        /// `in_session`, `idle`, `offline`, `faulted`, `locked_out` or `revoked`: the colour.
        var state: String
        /// The same in words.
        var label: String
        var program: String
        /// e.g. `step 3 · 1:20 left`; empty when no session runs.
        var left: String
        /// A lockout or faults, in words; empty when neither.
        var alert: String

        var plain: [String: String] {
            ["site": site, "device": device, "state": state, "label": label, "program": program, "left": left, "alert": alert]
        }
    }

    struct Site: Sendable {
        var tiles: [Tile]
        /// Devices of the site not shown as tiles (beyond its allowance).
        var more: Int
    }

    static let labels: [String: String] = [
        "in_session": "In session", "idle": "Idle", "offline": "Offline", "faulted": "Faulted",
        "locked_out": "Locked out", "revoked": "Revoked",
    ]

    /// The floor of every site `principal` may see, by site id.
    static func floor(_ core: ConsoleCore, for principal: Principal) -> [String: Site] {
        let devices = core.state.model.withLock { $0.devices }
        // Addresses, not records, are grouped and sorted: only the tiles' records are read.
        var bySite: [String: [DeviceAddress]] = [:]
        for address in devices.keys where principal.canSee(site: address.site.rawValue) {
            bySite[address.site.rawValue, default: []].append(address)
        }
        let allowed = allowances(bySite.mapValues(\.count), budget: maxTiles)
        return Dictionary(uniqueKeysWithValues: bySite.map { site, addresses in
            let allowance = allowed[site] ?? 0
            let shown = addresses.sorted { $0.device.rawValue < $1.device.rawValue }.prefix(allowance)
            return (site, Site(tiles: shown.compactMap { devices[$0].map(tile) }, more: max(0, addresses.count - allowance)))
        })
    }

    /// How many tiles each site gets from `budget`: an equal share, and what
    /// a smaller site does not use goes to the larger ones (smallest first,
    /// ties by site id; a share below one tile is none).
    static func allowances(_ counts: [String: Int], budget: Int) -> [String: Int] {
        var remaining = max(0, budget)
        var out: [String: Int] = [:]
        let sites = counts.sorted { ($0.value, $0.key) < ($1.value, $1.key) }
        for (index, (site, count)) in sites.enumerated() {
            let allowance = min(count, remaining / (sites.count - index))
            out[site] = allowance
            remaining -= allowance
        }
        return out
    }

    static func tile(_ r: DeviceRecord) -> Tile {
        var state = r.state.rawValue
        let t = r.online ? r.telemetry : nil
        if r.state == .idle || r.state == .inSession, t?.lockout != nil { state = "locked_out" }
        var alert: [String] = []
        if let l = t?.lockout {
            alert.append("pain lockout at \(String((l.point?.uppercased() ?? l.zone).prefix(32))), \(DashboardFormat.duration(l.remainingSeconds.rounded(.up))) left")
        }
        if let faults = t?.faults, !faults.isEmpty {
            alert.append("fault: " + faults.prefix(3).map { String($0.prefix(32)) }.joined(separator: ", ") + (faults.count > 3 ? " …" : ""))
        }
        var left = ""
        if r.state == .inSession, let step = t?.step {
            left = "step \(step.index + 1)" + (step.remainingSeconds.map { " · \(DashboardFormat.duration($0)) left" } ?? "")
        }
        let program = r.state == .inSession ? (r.session?.program ?? t?.program ?? "") : ""
        return Tile(site: r.site, device: r.device, state: state, label: labels[state] ?? state,
                    program: String(program.prefix(64)), left: left, alert: alert.joined(separator: "; "))
    }
}
