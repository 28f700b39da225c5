import Foundation

/// RFC 3339 timestamps as the contract writes them: UTC with milliseconds
/// (`2025-03-01T10:00:00.123Z`). Parsing is lenient in what RFC 3339 allows
/// (no fraction or any number of fraction digits, `Z` or a numeric offset,
/// lowercase `t`/`z`, a space instead of `T`) and strict in everything else
/// (a time zone is required; the calendar fields are range-checked, so
/// `2025-02-30` is refused instead of rolled over).
///
/// The calendar arithmetic is libc's (`timegm`, `gmtime_r`: UTC, reentrant);
/// there is no shared mutable `DateFormatter`. Dates are kept at millisecond
/// precision, so a parsed date formats back to the same string and a
/// formatted date parses back to an equal `Date`.
public enum RFC3339 {
    /// Years outside this range are refused when parsing and clamped when
    /// formatting (the proleptic Gregorian calendar is unambiguous here).
    public static let years: ClosedRange<Int> = 1583...9999
    /// An example, for error messages.
    public static let example = "2025-03-01T10:00:00.000Z"

    private static let minMilliseconds: Int64 = -12_212_553_600_000  // 1583-01-01T00:00:00Z
    private static let maxMilliseconds: Int64 = 253_402_300_799_999  // 9999-12-31T23:59:59.999Z

    /// `date` in UTC with exactly three fraction digits, rounded to the
    /// nearest millisecond.
    public static func string(from date: Date) -> String {
        let ms = milliseconds(of: date)
        let seconds = ms >= 0 ? ms / 1000 : (ms - 999) / 1000
        let fraction = Int(ms - seconds * 1000)
        var time = time_t(seconds)
        var tm = tm()
        gmtime_r(&time, &tm)
        return pad(Int(tm.tm_year) + 1900, 4) + "-" + pad(Int(tm.tm_mon) + 1, 2) + "-" + pad(Int(tm.tm_mday), 2) + "T"
            + pad(Int(tm.tm_hour), 2) + ":" + pad(Int(tm.tm_min), 2) + ":" + pad(Int(tm.tm_sec), 2) + "." + pad(fraction, 3) + "Z"
    }

    /// `date` rounded to the millisecond, as it reads back after a round trip.
    public static func normalized(_ date: Date) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds(of: date)) / 1000)
    }

    private static func milliseconds(of date: Date) -> Int64 {
        let raw = (date.timeIntervalSince1970 * 1000).rounded()
        guard raw.isFinite else { return raw > 0 ? maxMilliseconds : minMilliseconds }
        if raw >= Double(maxMilliseconds) { return maxMilliseconds }
        if raw <= Double(minMilliseconds) { return minMilliseconds }
        return Int64(raw)
    }

    /// The date, or nil when `string` is not an RFC 3339 date-time.
    public static func date(from string: String) -> Date? {
        var string = string
        guard let fields = string.withUTF8({ scan($0) }) else { return nil }
        // The calendar arithmetic is libc's `timegm` (UTC, no time zone
        // database); only the fields we validated reach it. Every message the
        // console ingests carries a date, so this stays off Foundation's
        // general-purpose ISO 8601 parser.
        var tm = tm()
        tm.tm_year = Int32(fields.year - 1900)
        tm.tm_mon = Int32(fields.month - 1)
        tm.tm_mday = Int32(fields.day)
        tm.tm_hour = Int32(fields.hour)
        tm.tm_min = Int32(fields.minute)
        tm.tm_sec = Int32(min(fields.second, 59))
        let seconds = Int64(timegm(&tm)) - Int64(fields.offsetMinutes) * 60
        // A leap second (:60) reads as the last millisecond of its minute.
        let ms = fields.second == 60 ? 999 : fields.milliseconds
        return Date(timeIntervalSince1970: Double(seconds * 1000 + Int64(ms)) / 1000)
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }

    private struct Fields {
        var year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, milliseconds = 0, offsetMinutes = 0
    }

    private static func scan(_ b: UnsafeBufferPointer<UInt8>) -> Fields? {
        var i = 0
        func digits(_ n: Int) -> Int? {
            guard i + n <= b.count else { return nil }
            var v = 0
            for k in i..<(i + n) {
                guard b[k] >= 48, b[k] <= 57 else { return nil }
                v = v * 10 + Int(b[k] - 48)
            }
            i += n
            return v
        }
        func expect(_ chars: String) -> Bool {
            guard i < b.count, chars.utf8.contains(b[i]) else { return false }
            i += 1
            return true
        }
        var f = Fields()
        guard let year = digits(4), expect("-"), let month = digits(2), expect("-"), let day = digits(2),
              expect("Tt "), let hour = digits(2), expect(":"), let minute = digits(2), expect(":"),
              let second = digits(2)
        else { return nil }
        (f.year, f.month, f.day, f.hour, f.minute, f.second) = (year, month, day, hour, minute, second)
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            let start = i
            var ms = 0
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                if i - start < 3 { ms = ms * 10 + Int(b[i] - 48) }
                i += 1
            }
            let count = i - start
            guard count >= 1, count <= 18 else { return nil }
            if count < 3 { for _ in count..<3 { ms *= 10 } }
            f.milliseconds = ms
        }
        guard i < b.count else { return nil }  // a time zone is required
        if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
            i += 1
        } else {
            let sign = b[i] == UInt8(ascii: "+") ? 1 : b[i] == UInt8(ascii: "-") ? -1 : 0
            guard sign != 0 else { return nil }
            i += 1
            guard let oh = digits(2), expect(":"), let om = digits(2), oh <= 23, om <= 59 else { return nil }
            f.offsetMinutes = sign * (oh * 60 + om)
        }
        guard i == b.count else { return nil }
        guard years.contains(f.year), (1...12).contains(f.month), f.day >= 1,
              f.day <= daysIn(month: f.month, year: f.year), f.hour <= 23, f.minute <= 59, f.second <= 60
        else { return nil }
        return f
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}

extension KeyedEncodingContainer {
    /// Encodes `date` as an RFC 3339 string whatever the encoder's date strategy.
    public mutating func encodeRFC3339(_ date: Date, forKey key: Key) throws {
        try encode(RFC3339.string(from: date), forKey: key)
    }

    public mutating func encodeRFC3339IfPresent(_ date: Date?, forKey key: Key) throws {
        if let date { try encodeRFC3339(date, forKey: key) }
    }
}

extension KeyedDecodingContainer {
    /// Decodes an RFC 3339 string whatever the decoder's date strategy.
    public func decodeRFC3339(forKey key: Key) throws -> Date {
        let string: String
        do {
            string = try decode(String.self, forKey: key)
        } catch DecodingError.keyNotFound(let k, let context) {
            throw DecodingError.keyNotFound(k, context)
        } catch {
            throw DecodingError.typeMismatch(
                Date.self,
                .init(codingPath: codingPath + [key], debugDescription: RFC3339.expectation, underlyingError: error))
        }
        guard let date = RFC3339.date(from: string) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: RFC3339.expectation)
        }
        return date
    }

    public func decodeRFC3339IfPresent(forKey key: Key) throws -> Date? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        return try decodeRFC3339(forKey: key)
    }
}

extension RFC3339 {
    static let expectation = "expected an RFC 3339 date-time such as \(example)"
}
