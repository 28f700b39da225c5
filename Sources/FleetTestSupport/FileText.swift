import Foundation

/// Small readers for files a child process writes while it runs.
enum FileText {
    /// The file's size in bytes, 0 if it does not exist.
    static func size(of url: URL) -> UInt64 {
        let attributes = try? FileManager.default.attributesOfItem(atPath: url.path)
        return (attributes?[.size] as? NSNumber)?.uint64Value ?? 0
    }

    /// The file's text from byte `offset` on ("" if unreadable). Invalid
    /// UTF-8 is repaired, never fatal.
    static func read(_ url: URL, from offset: UInt64 = 0) -> String {
        guard let handle = try? FileHandle(forReadingFrom: url) else { return "" }
        defer { try? handle.close() }
        if offset > 0 {
            guard (try? handle.seek(toOffset: offset)) != nil else { return "" }
        }
        let data = (try? handle.readToEnd()) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// The last `lines` lines of `text`.
    static func tail(_ text: String, lines: Int = 30) -> String {
        let all = text.split(separator: "\n", omittingEmptySubsequences: false)
        let trimmed = all.last == "" ? all.dropLast() : all[...]
        return trimmed.suffix(lines).joined(separator: "\n")
    }

    /// "<label> (<path>), last lines:\n<tail>" or "<label> (<path>) is empty".
    static func excerpt(_ label: String, _ url: URL, from offset: UInt64 = 0, lines: Int = 30) -> String {
        let text = tail(read(url, from: offset), lines: lines)
        if text.isEmpty {
            return "\(label) (\(url.path)) is empty"
        }
        return "\(label) (\(url.path)), last lines:\n\(text)"
    }
}
