import FleetProtocol
import Foundation

/// What a site-limited token sees of a rollout (issue 20, item 6).
///
/// A rollout may span sites (`targets: {all: true}` or several sites). A
/// token limited to some sites sees such a rollout only through its own
/// sites: the members there, the counts and each wave's size over them, and
/// the document's targets narrowed to them; `partial` says that members
/// were left out (not how many, nor where). A rollout with no member at the
/// token's sites does not exist for it (404, and absent from the list). The
/// rollout's state and its waves' states are the whole rollout's: they are
/// what the token's devices are subject to. A reason that counts devices
/// across the rollout (an error threshold) is replaced by one that does not.
extension Rollout {
    /// The rollout as `principal` may see it, or nil when none of its
    /// devices is at a site the principal may see. A token of every site
    /// sees the whole rollout.
    public func visible(to principal: Principal) -> Rollout? {
        guard principal.sites != nil else { return self }
        let mine = devices.filter { principal.canSee(site: $0.site) }
        guard !mine.isEmpty else { return nil }
        guard mine.count < devices.count else { return self }
        var view = self
        view.partial = true
        view.devices = mine
        for i in view.waves.indices {
            view.waves[i].size = mine.filter { $0.wave == view.waves[i].index }.count
        }
        view.document.targets.sites = document.targets.sites.map { $0.filter { principal.canSee(site: $0) } }
        view.document.targets.devices = document.targets.devices.map {
            $0.filter { address in principal.canSee(site: String(address.split(separator: "/").first ?? "")) }
        }
        if let reason, reason.contains(RolloutRunner.thresholdMarker), let threshold = document.errorThreshold {
            view.reason = RolloutRunner.scopedThresholdReason(threshold)
        }
        return view
    }

}
