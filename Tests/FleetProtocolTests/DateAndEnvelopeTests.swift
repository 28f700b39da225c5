import Foundation
import Testing
@testable import FleetProtocol

@Suite("RFC 3339 dates and the envelope")
struct DateAndEnvelopeTests {
    /// 2025-03-01T10:00:00Z
    let base = Date(timeIntervalSince1970: 1_740_823_200)

    @Test("dates format as UTC with exactly three fraction digits")
    func format() {
        #expect(RFC3339.string(from: base) == "2025-03-01T10:00:00.000Z")
        #expect(RFC3339.string(from: base.addingTimeInterval(0.001)) == "2025-03-01T10:00:00.001Z")
        #expect(RFC3339.string(from: base.addingTimeInterval(0.5)) == "2025-03-01T10:00:00.500Z")
        #expect(RFC3339.string(from: base.addingTimeInterval(59.9996)) == "2025-03-01T10:01:00.000Z")
        #expect(RFC3339.string(from: base.addingTimeInterval(-0.001)) == "2025-03-01T09:59:59.999Z")
    }

    @Test("dates parse with or without fractional seconds and with offsets")
    func parse() {
        let cases: [(String, Double)] = [
            ("2025-03-01T10:00:00Z", 0),
            ("2025-03-01T10:00:00.000Z", 0),
            ("2025-03-01T10:00:00.123Z", 0.123),
            ("2025-03-01T10:00:00.1Z", 0.1),
            ("2025-03-01T10:00:00.123456789Z", 0.123),
            ("2025-03-01T12:00:00+02:00", 0),
            ("2025-03-01T12:30:00.250+02:30", 0.25),
            ("2025-03-01T05:00:00-05:00", 0),
            ("2025-03-01t10:00:00z", 0),
            ("2025-03-01 10:00:00Z", 0),
        ]
        for (string, offset) in cases {
            #expect(RFC3339.date(from: string) == RFC3339.normalized(base.addingTimeInterval(offset)), "\(string)")
        }
    }

    @Test("malformed and out-of-range dates are refused, not rolled over")
    func refuse() {
        for bad in ["", "2025-03-01", "2025-03-01T10:00:00", "2025-03-01T10:00Z", "2025-02-30T10:00:00Z",
                    "2025-13-01T10:00:00Z", "2025-03-01T24:00:00Z", "2025-03-01T10:60:00Z", "2025-03-01T10:00:00.Z",
                    "2025-03-01T10:00:00+2:00", "2025-03-01T10:00:00+24:00", "tomorrow", "1740823200",
                    "2025-03-01T10:00:00Zjunk", " 2025-03-01T10:00:00Z", "0999-01-01T00:00:00Z", "２０２５-03-01T10:00:00Z"] {
            #expect(RFC3339.date(from: bad) == nil, "\(bad)")
        }
        #expect(RFC3339.date(from: "2024-02-29T00:00:00Z") != nil)
        #expect(RFC3339.date(from: "2023-02-29T00:00:00Z") == nil)
    }

    @Test("a leap second reads as the last millisecond of its minute")
    func leapSecond() {
        #expect(RFC3339.date(from: "2016-12-31T23:59:60Z").map(RFC3339.string) == "2016-12-31T23:59:59.999Z")
    }

    @Test("every millisecond of a span round-trips exactly")
    func millisecondRoundTrip() {
        for ms in stride(from: 0, to: 5_000, by: 1) {
            let date = RFC3339.normalized(base.addingTimeInterval(Double(ms) / 1000))
            let string = RFC3339.string(from: date)
            #expect(RFC3339.date(from: string) == date, "\(string)")
            #expect(string.hasSuffix(String(format: "%03dZ", ms % 1000)))
        }
        for string in ["1600-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z", "1970-01-01T00:00:00.000Z"] {
            #expect(RFC3339.date(from: string).map(RFC3339.string) == string)
        }
    }

    @Test("the shared coders write and read dates as RFC 3339")
    func sharedCoders() throws {
        struct Holder: Codable, Equatable { var when: Date }
        let data = try FleetJSON.encode(Holder(when: base))
        #expect(String(decoding: data, as: UTF8.self) == #"{"when":"2025-03-01T10:00:00.000Z"}"#)
        let decoded = try FleetJSON.makeDecoder().decode(Holder.self, from: Data(#"{"when":"2025-03-01T11:00:00+01:00"}"#.utf8))
        #expect(decoded.when == base)
        #expect(throws: DecodingError.self) {
            try FleetJSON.makeDecoder().decode(Holder.self, from: Data(#"{"when":1740823200}"#.utf8))
        }
    }

    @Test("the envelope encodes ts, epoch, seq and historical only when true")
    func envelope() throws {
        let live = Stamped(Status.offline(), envelope: Envelope(ts: base, epoch: 3, seq: 9))
        let object = try JSONValue(encoding: live)
        #expect(object == ["state": "offline", "ts": "2025-03-01T10:00:00.000Z", "epoch": 3, "seq": 9])
        let replayed = Stamped(Status.offline(), envelope: live.envelope.asHistorical())
        #expect(try JSONValue(encoding: replayed)["historical"] == true)
        let decoded = try FleetJSON.decode(StatusMessage.self, from: Data(
            #"{"state":"offline","ts":"2025-03-01T10:00:00Z","epoch":3,"seq":9,"historical":true}"#.utf8)).get()
        #expect(decoded.envelope == Envelope(ts: base, epoch: 3, seq: 9, historical: true))
        #expect(decoded.state == .offline)
    }

    @Test("an agent message without its envelope is refused, naming the field")
    func envelopeRequired() {
        let result = FleetJSON.decode(StatusMessage.self, from: Data(#"{"state":"online","epoch":1,"seq":1}"#.utf8))
        #expect(result == .failure(.badRequest("missing field \"ts\"")))
        let badSeq = FleetJSON.decode(StatusMessage.self,
                                      from: Data(#"{"state":"online","ts":"2025-03-01T10:00:00Z","epoch":1,"seq":-1}"#.utf8))
        #expect(badSeq == .failure(.badRequest("seq: expected an integer 0–9007199254740992 (2^53), got -1")))
        let badTs = FleetJSON.decode(StatusMessage.self,
                                     from: Data(#"{"state":"online","ts":"yesterday","epoch":1,"seq":1}"#.utf8))
        #expect(badTs == .failure(.badRequest("ts: \(RFC3339.expectation), got \"yesterday\"")))
    }

    @Test("sequence checks: next, duplicate, gap, new and old epochs")
    func sequence() {
        #expect(SequenceCheck.classify(last: nil, incoming: (1, 5)) == .next)
        #expect(SequenceCheck.classify(last: (1, 5), incoming: (1, 6)) == .next)
        #expect(SequenceCheck.classify(last: (1, 5), incoming: (1, 5)) == .notNewer)
        #expect(SequenceCheck.classify(last: (1, 5), incoming: (1, 3)) == .notNewer)
        #expect(SequenceCheck.classify(last: (1, 5), incoming: (1, 9)) == .gap(missing: 3))
        #expect(SequenceCheck.classify(last: (1, 5), incoming: (2, 1)) == .newEpoch(missing: 0))
        #expect(SequenceCheck.classify(last: (1, 5), incoming: (2, 4)) == .newEpoch(missing: 3))
        #expect(SequenceCheck.classify(last: (2, 1), incoming: (1, 7)) == .olderEpoch)
    }
}
