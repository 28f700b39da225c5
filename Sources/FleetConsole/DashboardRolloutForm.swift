import FleetProtocol
import Foundation

/// The dashboard's rollout form (issue 24, item 1) turned into the API's
/// rollout document, and checked by the same code as `POST
/// /api/v1/rollouts` (`RolloutDocument.decodeCollecting`, then the targets
/// as `createRollout` resolves them). Every reason names its key; nothing
/// is sent to a device until the form has none.
struct DashboardRolloutForm: Sendable {
    static let days = RolloutDocument.days

    /// The form's fields as the browser sent them (shown again with the reasons).
    var fields: [String: String]

    /// The document as JSON, and the reasons found reading the form itself
    /// (a number that is not one, a config that is not YAML or JSON).
    func document() -> (JSONValue, [String]) {
        var reasons: [String] = []
        var doc: [String: JSONValue] = [:]
        func text(_ name: String) -> String? {
            let v = (fields[name] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            return v.isEmpty ? nil : v
        }
        func number(_ name: String, key: String, integer: Bool = false) -> JSONValue? {
            guard let v = text(name) else { return nil }
            if integer {
                guard let n = Int(v) else { reasons.append("\(key): expected a whole number, got \"\(RolloutForms.clip(v))\""); return nil }
                return .integer(Int64(n))
            }
            guard let n = Double(v), n.isFinite else { reasons.append("\(key): expected a number, got \"\(RolloutForms.clip(v))\""); return nil }
            return .number(n)
        }
        doc["name"] = .string(text("name") ?? "")
        var targets: [String: JSONValue] = [:]
        if fields["all"] == "on" { targets["all"] = .bool(true) }
        let sites = fields.keys.filter { $0.hasPrefix("site.") && fields[$0] == "on" }.map { String($0.dropFirst(5)) }.sorted()
        if !sites.isEmpty { targets["sites"] = .array(sites.map(JSONValue.string)) }
        // One a line, or separated by commas or spaces ("\r\n" is one Character: isNewline).
        let devices = (fields["devices"] ?? "").split(whereSeparator: { $0.isNewline || $0.isWhitespace || $0 == "," }).map(String.init)
        if !devices.isEmpty { targets["devices"] = .array(devices.map(JSONValue.string)) }
        doc["targets"] = .object(targets)
        var waves: [String: JSONValue] = [:]
        if text("canary") == nil { reasons.append("waves.canary: required (the devices of the first wave)") }
        // A canary the form could not read still lets the rest be checked.
        waves["canary"] = number("canary", key: "waves.canary", integer: true) ?? .integer(1)
        if fields["wave_mode"] == "factor" {
            if let f = number("factor", key: "waves.factor") { waves["factor"] = f } else if text("factor") == nil { reasons.append("waves.factor: required when the waves grow by a factor") }
        } else {
            var percentages: [JSONValue] = []
            for part in (fields["percentages"] ?? "").split(whereSeparator: { $0 == "," || $0 == " " }) {
                if let p = Double(part), p.isFinite { percentages.append(.number(p)) } else {
                    reasons.append("waves.percentages: \"\(RolloutForms.clip(String(part)))\" is not a number")
                }
            }
            waves["percentages"] = .array(percentages)
        }
        doc["waves"] = .object(waves)
        if let b = number("bake_s", key: "bake_s") { doc["bake_s"] = b }
        if let t = number("apply_timeout_s", key: "apply_timeout_s") { doc["apply_timeout_s"] = t }
        if text("threshold_percent") != nil || text("threshold_min") != nil {
            var t: [String: JSONValue] = ["action": .string(text("threshold_action") ?? "pause")]
            t["percent"] = number("threshold_percent", key: "error_threshold.percent")
            t["min_executed"] = number("threshold_min", key: "error_threshold.min_executed", integer: true)
            if t["percent"] == nil, text("threshold_percent") == nil { reasons.append("error_threshold.percent: required with an error threshold") }
            if t["min_executed"] == nil, text("threshold_min") == nil { reasons.append("error_threshold.min_executed: required with an error threshold") }
            if t["percent"] != nil, t["min_executed"] != nil { doc["error_threshold"] = .object(t) }
        }
        let windowDays = Self.days.filter { fields["day.\($0)"] == "on" }
        if !windowDays.isEmpty || text("window_start") != nil || text("window_end") != nil {
            doc["maintenance_window"] = .object(["days": .array(windowDays.map(JSONValue.string)),
                                                 "start": .string(text("window_start") ?? ""), "end": .string(text("window_end") ?? "")])
        }
        if let o = text("on_abort") { doc["on_abort"] = .string(o) }
        if let config = text("config") {
            do {
                let data = try RolloutDocument.json(fromYAML: config)
                switch FleetJSON.parse(Array(data)) {
                case .success(let v): doc["config"] = v
                case .failure(let e): reasons.append("config: \(e.message)")
                }
            } catch {
                reasons.append("config: expected YAML or JSON keys and values (e.g. telemetry_interval_s: 5): \(RolloutForms.clip("\(error)", 200))")
            }
        } else {
            reasons.append("config: required (YAML or JSON)")
        }
        return (.object(doc), reasons)
    }

    /// Checks the form as the API checks a document (RolloutPreview): the
    /// form's own reasons, then the document's, then its targets.
    func check(_ core: ConsoleCore, for principal: Principal) -> RolloutPreview {
        let (json, found) = document()
        let bytes = (try? FleetJSON.encode(json)).map(Array.init) ?? []
        return RolloutPreview(bytes, found: found, rollouts: core.rollouts, for: principal)
    }
}

enum RolloutForms {
    static func clip(_ s: String, _ n: Int = 40) -> String { s.count > n ? String(s.prefix(n)) + "…" : s }
}
