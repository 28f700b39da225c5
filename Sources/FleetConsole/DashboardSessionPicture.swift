import Foundation

/// The device page's live session picture (issue 24, item 2), from
/// `TelemetryHistory`: pressure per zone over the last minutes as an inline
/// SVG chart drawn by the server, and the session's steps so far as a
/// timeline with the current one marked. Sent again by the device's live
/// stream. The chart holds only numbers and the six known zone names (no
/// text a device chose), and the steps go to the page as text.
enum DashboardSessionPicture {
    static let width = 640.0, height = 220.0, left = 44.0, bottom = 24.0, top = 10.0, right = 90.0
    /// A colour per zone (in `TelemetryHistory.zones` order), each at least
    /// 4.5:1 against white, and a dash pattern so colour is not the only cue.
    static let colours = ["#0a58ca", "#a40e26", "#116329", "#7d4e00", "#6f42c1", "#0b6e78"]
    static let dashes = ["", "6 3", "2 3", "8 3 2 3", "4 4", "1 2"]

    static func chart(_ history: TelemetryHistory.Device?) -> String {
        let samples = history?.samples ?? []
        let zones = TelemetryHistory.zones.indices.filter { z in samples.contains { $0.pressure(of: z) != nil } }
        guard let first = samples.first, let last = samples.last, !zones.isEmpty else {
            return "<svg id=\"pressure-chart\" role=\"img\" aria-label=\"Pressure per zone: no session data yet\" viewBox=\"0 0 \(Int(width)) 40\" width=\"100%\"><text x=\"0\" y=\"24\">No session data yet.</text></svg>"
        }
        let span = max(last.at.timeIntervalSince(first.at), 1)
        let peak = max(50, samples.flatMap { s in zones.compactMap { s.pressure(of: $0) } }.max() ?? 50)
        let scaleTop = (peak / 20).rounded(.up) * 20 // ticks at whole multiples of 5 mmHg
        let plotW = width - left - right, plotH = height - top - bottom
        func x(_ d: Date) -> String { String(format: "%.1f", left + plotW * d.timeIntervalSince(first.at) / span) }
        func y(_ p: Double) -> String { String(format: "%.1f", top + plotH * (1 - p / scaleTop)) }
        let latest = zones.compactMap { z in last.pressure(of: z).map { "\(TelemetryHistory.zones[z]) \(Int($0.rounded())) mmHg" } }
        let label = "Pressure per zone over the last \(DashboardFormat.duration(span)): " + (latest.isEmpty ? "no zone active now" : "now " + latest.joined(separator: ", "))
        var svg = "<svg id=\"pressure-chart\" role=\"img\" aria-label=\"\(UsageCharts.escape(label))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"100%\">"
        svg += "<title>\(UsageCharts.escape(label))</title>"
        for tick in stride(from: 0.0, through: scaleTop, by: scaleTop / 4) {
            svg += "<line x1=\"\(Int(left))\" x2=\"\(Int(width - right))\" y1=\"\(y(tick))\" y2=\"\(y(tick))\" stroke=\"#d0d7de\"/>"
            svg += "<text x=\"0\" y=\"\(y(tick))\" dy=\"4\">\(Int(tick))</text>"
        }
        svg += "<text x=\"\(Int(left))\" y=\"\(Int(height - 4))\">−\(DashboardFormat.duration(span))</text>"
        svg += "<text x=\"\(Int(width - right))\" y=\"\(Int(height - 4))\" text-anchor=\"end\">now (mmHg)</text>"
        for (n, z) in zones.enumerated() {
            let points = samples.compactMap { s in s.pressure(of: z).map { "\(x(s.at)),\(y($0))" } }
            let dash = dashes[z].isEmpty ? "" : " stroke-dasharray=\"\(dashes[z])\""
            svg += "<polyline data-zone=\"\(TelemetryHistory.zones[z])\" fill=\"none\" stroke=\"\(colours[z])\" stroke-width=\"2\"\(dash) points=\"\(points.joined(separator: " "))\"/>"
            svg += "<text x=\"\(Int(width - right + 8))\" y=\"\(Int(top) + 14 + 16 * n)\" fill=\"\(colours[z])\">\(TelemetryHistory.zones[z])</text>"
        }
        return svg + "</svg>"
    }

    /// The steps seen in the session, oldest first, the last marked current
    /// while the session runs.
    static func steps(_ history: TelemetryHistory.Device?, running: Bool) -> [[String: Any]] {
        let steps = history?.steps ?? []
        return steps.enumerated().map { n, s in
            let current = running && n == steps.count - 1
            var text = "Step \(s.index + 1): \(s.target == s.zone ? s.zone : "\(s.target.uppercased()) (\(s.zone))"), \(s.technique), intensity \(s.intensity)"
            text += ", \(DashboardFormat.duration(s.lastSeen.timeIntervalSince(s.firstSeen))) seen"
            if let b = s.breathingBPM { text += ", breathing cue \(b)/min" }
            if current, let left = s.remainingSeconds { text += ", \(DashboardFormat.duration(left)) left" }
            return ["index": "\(s.index + 1)", "text": text, "current": current]
        }
    }
}
