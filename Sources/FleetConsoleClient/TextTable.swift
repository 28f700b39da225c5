import Foundation

/// Rows as an aligned text table, as the CLI prints lists: the header, a
/// rule of dashes, then one line per row; columns padded to their widest
/// cell, two spaces apart, and each line trimmed of surrounding spaces.
public struct TextTable: Sendable, Equatable {
    public var header: [String]
    public var rows: [[String]]

    public init(_ header: [String], _ rows: [[String]]) {
        self.header = header
        self.rows = rows
    }

    /// The table's lines, without line ends.
    public var lines: [String] {
        var widths = header.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
        return [line(header), line(widths.map { String(repeating: "-", count: $0) })] + rows.map(line)
    }

    /// The lines joined by newlines (no newline at the end).
    public var text: String { lines.joined(separator: "\n") }
}
