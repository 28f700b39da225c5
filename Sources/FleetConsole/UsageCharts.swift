import Foundation

/// Inline SVG bar charts drawn by the server.
enum UsageCharts {
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// `format` writes a value as people read it (DashboardFormat: a count
    /// as an integer, seconds as m:ss).
    static func bars(title: String, _ items: [(String, Double)], format: (Double) -> String) -> String {
        guard !items.isEmpty else { return "" }
        let width = 480.0, rowH = 22.0, label = 170.0
        let maxValue = max(items.map(\.1).max() ?? 1, 0.001)
        var svg = "<figure><figcaption>\(escape(title))</figcaption><svg role=\"img\" aria-label=\"\(escape(title))\" viewBox=\"0 0 \(Int(width)) \(Int(Double(items.count) * rowH + 4))\" width=\"100%\">"
        for (i, item) in items.enumerated() {
            let y = Double(i) * rowH
            let w = (width - label - 60) * item.1 / maxValue
            svg += "<text x=\"0\" y=\"\(y + 15)\">\(escape(item.0))</text>"
            svg += "<rect x=\"\(label)\" y=\"\(y + 3)\" width=\"\(String(format: "%.1f", max(w, 1)))\" height=\"\(rowH - 6)\" fill=\"#0a58ca\"><title>\(escape(item.0)): \(format(item.1))</title></rect>"
            svg += "<text x=\"\(String(format: "%.1f", label + max(w, 1) + 6))\" y=\"\(y + 15)\">\(format(item.1))</text>"
        }
        return svg + "</svg></figure>"
    }

    static func days(title: String, _ items: [(String, Double)], format: (Double) -> String) -> String { bars(title: title, items, format: format) }
}
