import FleetConsole
import FleetConsoleClient
import FleetProtocol
import Foundation
import Testing

// The client library behind fleet-console's client subcommands, without a
// console: how a failed reply reads, and how the tables line up. (The
// end-to-end suites run the CLI as a process against a real console.)

@Suite("Console client")
struct ConsoleClientTests {

    @Test("a refusal with the API's error body reads as its message, status and code")
    func apiErrorBody() {
        let body = Data(#"{"error":{"code":"forbidden","message":"token \"ops\" may not start sessions at site clinic-south"}}"#.utf8)
        let error = ConsoleClient.failure(status: 403, body: body)
        #expect(error.description == #"token "ops" may not start sessions at site clinic-south (HTTP 403 forbidden)"#)
    }

    @Test("any other failed reply reads as its status and the first 500 bytes of its body")
    func otherFailure() {
        #expect(ConsoleClient.failure(status: 502, body: Data("Bad Gateway".utf8)).description == "HTTP 502: Bad Gateway")
        let long = ConsoleClient.failure(status: 500, body: Data(String(repeating: "x", count: 2000).utf8))
        #expect(long.description == "HTTP 500: " + String(repeating: "x", count: 500))
        // JSON that is not the API's error shape is shown as it came.
        #expect(ConsoleClient.failure(status: 400, body: Data(#"{"oops":1}"#.utf8)).description == #"HTTP 400: {"oops":1}"#)
    }

    @Test("the base URL loses a trailing slash, so paths join with one")
    func baseURL() {
        #expect(ConsoleClient(api: "http://127.0.0.1:8080/", token: "t").base == "http://127.0.0.1:8080")
        #expect(ConsoleClient(api: "https://console.example", token: "t").base == "https://console.example")
    }

    @Test("a table pads each column to its widest cell, two spaces apart, with a rule under the header and no trailing spaces")
    func textTable() {
        let table = TextTable(["SITE", "DEVICE", "DETAIL"], [
            ["clinic-north", "m1", ""],
            ["s", "massager-07", "busy: a session is running"],
        ])
        #expect(table.lines == [
            "SITE          DEVICE       DETAIL",
            "------------  -----------  --------------------------",
            "clinic-north  m1",
            "s             massager-07  busy: a session is running",
        ])
        #expect(table.text == table.lines.joined(separator: "\n"))
        #expect(TextTable(["ID", "NAME"], []).lines == ["ID  NAME", "--  ----"])
    }

    @Test("the alerts table shows a site-wide alert as device *, times in RFC 3339 and - when not cleared")
    func alertsTable() throws {
        let json = #"""
            {"alerts": [
              {"id": 7, "site": "clinic-north", "device": null, "type": "repeated_pain", "severity": "warning",
               "message": "3 pain signals in 1 h on calf-release", "raised_at": "2026-01-01T09:00:00.000Z"},
              {"id": 8, "site": "clinic-north", "device": "m1", "type": "offline", "severity": "critical",
               "message": "offline", "raised_at": "2026-01-01T09:05:00.000Z", "cleared_at": "2026-01-01T09:06:00.000Z",
               "acknowledged_by": "ops"}
            ]}
            """#
        struct List: Decodable { var alerts: [AlertRecord] }
        let list = try FleetJSON.makeDecoder().decode(List.self, from: Data(json.utf8))
        let lines = ConsoleTables.alerts(list.alerts).lines
        #expect(lines.count == 4)
        #expect(lines[0].hasPrefix("ID  SEVERITY  SITE          DEVICE  TYPE"))
        #expect(lines[2].hasPrefix("7   warning   clinic-north  *       repeated_pain  2026-01-01T09:00:00"))
        #expect(lines[2].contains(" -  "), "not cleared: \(lines[2])")
        #expect(lines[3].contains("critical") && lines[3].contains("ops") && lines[3].hasSuffix("offline"))
        #expect(ConsoleTables.when(nil) == "-")
    }

    @Test("--json prints the API's JSON indented with sorted keys, and anything else as it came")
    func prettyJSON() throws {
        let pretty = ConsoleTables.prettyJSON(Data(#"{"b":1,"a":[true]}"#.utf8))
        #expect(pretty.contains("\n  "), "indented: \(pretty)")
        let a = try #require(pretty.range(of: "\"a\"")), b = try #require(pretty.range(of: "\"b\""))
        #expect(a.lowerBound < b.lowerBound, "keys sorted: \(pretty)")
        #expect(ConsoleTables.prettyJSON(Data("not json".utf8)) == "not json")
    }
}
