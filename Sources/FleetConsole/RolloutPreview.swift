import FleetProtocol
import Foundation

/// What a rollout document would do, without starting it: every reason it
/// would be refused (each naming its key), how many devices it targets and
/// the size of each wave. The same checks as `POST /api/v1/rollouts`
/// (`RolloutDocument.decodeCollecting`, then the targets as
/// `RolloutService.create` resolves them for the token); served as `POST
/// /api/v1/rollouts/preview` and behind the dashboard's rollout form.
struct RolloutPreview: Encodable, Sendable {
    var reasons: [String]
    /// The document, when no reason is left.
    var document: RolloutDocument?
    var targets: Int
    var waves: [Int]

    enum CodingKeys: String, CodingKey { case ok, reasons, targets, waves }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(reasons.isEmpty, forKey: .ok)
        try c.encode(reasons, forKey: .reasons)
        try c.encode(targets, forKey: .targets)
        try c.encode(waves, forKey: .waves)
    }

    /// Checks `bytes` (a JSON rollout document). `found` are reasons already
    /// found in what the document was made from (the dashboard's form): the
    /// document's reasons about the same keys are left out.
    init(_ bytes: [UInt8], found: [String] = [], rollouts: RolloutService, for principal: Principal) {
        reasons = found
        switch RolloutDocument.decodeCollecting(bytes) {
        case .success(let d): document = d
        case .failure(let error):
            reasons += error.reasons.filter { r in !found.contains { Self.key(of: $0) == Self.key(of: r) } }
        }
        targets = 0
        waves = []
        // The devices and waves are previewed even while other keys are wrong.
        var candidate = document
        if candidate == nil, case .success(let d) = FleetJSON.decode(RolloutDocument.self, from: bytes) { candidate = d }
        if let doc = candidate {
            do throws(ConsoleError) {
                targets = try rollouts.rolloutTargets(doc.targets, for: principal).count
                if targets == 0 { reasons.append("targets: no known device matches") }
                waves = doc.waveSizes(count: targets)
            } catch {
                reasons.append(error.message.hasPrefix("targets") ? error.message : "targets: \(error.message)")
            }
        }
        if !reasons.isEmpty { document = nil }
    }

    /// The key a reason names: the text before its first ": ".
    static func key(of reason: String) -> String {
        reason.range(of: ": ").map { String(reason[..<$0.lowerBound]) } ?? reason
    }
}
