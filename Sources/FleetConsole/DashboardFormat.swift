import Foundation

/// Numbers, durations and times as people read them (issue 24, item 4):
/// counts as integers, durations as minutes and seconds, times in the
/// site's time zone with the zone shown.
enum DashboardFormat {
    /// `d` in `zone`, e.g. `2026-12-07 17:05:12 CET`: the wall-clock time of
    /// the site, and its zone's abbreviation (`UTC` for UTC, the identifier
    /// where Foundation knows no abbreviation). Empty for nil.
    static func time(_ d: Date?, in zone: TimeZone) -> String {
        guard let d else { return "" }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: d)
        let text = String(format: "%04d-%02d-%02d %02d:%02d:%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0, c.hour ?? 0, c.minute ?? 0, c.second ?? 0)
        return text + " " + zoneName(zone, at: d)
    }

    static func zoneName(_ zone: TimeZone, at d: Date) -> String {
        if zone.identifier == "UTC" || zone.identifier == "GMT" || zone.identifier == "Etc/UTC" { return "UTC" }
        guard let abbreviation = zone.abbreviation(for: d), !abbreviation.isEmpty else { return zone.identifier }
        return abbreviation
    }

    /// Seconds as `m:ss` (`h:mm:ss` from an hour on); negative, NaN and
    /// infinite values (a device's, so untrusted) read as `0:00`, and values
    /// beyond a day are capped there.
    static func duration(_ seconds: Double) -> String {
        let total = seconds.isFinite ? Int(min(max(seconds, 0), 86_400).rounded()) : 0
        let h = total / 3600, m = (total % 3600) / 60, s = total % 60
        return h > 0 ? String(format: "%d:%02d:%02d", h, m, s) : String(format: "%d:%02d", m, s)
    }

    /// A count: an integer with no decimal part (`5`, never `5.0`).
    static func count(_ value: Double) -> String {
        value.isFinite ? String(Int(value.rounded())) : "0"
    }
}
