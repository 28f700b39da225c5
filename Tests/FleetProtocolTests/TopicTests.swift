import Testing
@testable import FleetProtocol

@Suite("Identifiers and topics")
struct TopicTests {
    let root = TopicRoot.default
    let calf = try! DeviceAddress(site: "clinic-1", device: "m_07")

    @Test("identifiers follow [a-z0-9][a-z0-9_-]{0,62}")
    func identifierRule() {
        for good in ["a", "0", "clinic-1", "m_07", "gb34", String(repeating: "a", count: 63)] {
            #expect(Identifier.isValid(good), "\(good)")
        }
        for bad in ["", "-a", "_console", "Clinic", "a b", "a/b", "a+", "#", "é", String(repeating: "a", count: 64)] {
            #expect(!Identifier.isValid(bad), "\(bad)")
            #expect(Identifier(rawValue: bad) == nil)
        }
    }

    @Test("a bad identifier's error names the value, what it was and the rule")
    func identifierError() {
        #expect(throws: IdentifierError.self) { try Identifier(validating: "Clinic 1", as: "site") }
        do {
            _ = try Identifier(validating: "Clinic 1", as: "site")
        } catch {
            #expect(error.description.contains("site \"Clinic 1\""))
            #expect(error.description.contains("[a-z0-9][a-z0-9_-]{0,62}"))
        }
        #expect(throws: IdentifierError(value: "UPPER", what: "device")) {
            try DeviceAddress(site: "ok", device: "UPPER")
        }
    }

    @Test("device topics are built under the root as DESIGN.md §3 names them")
    func buildTopics() throws {
        #expect(root.topic(.status, for: calf) == "massage/v1/clinic-1/m_07/status")
        #expect(root.topic(.telemetry, for: calf) == "massage/v1/clinic-1/m_07/telemetry")
        #expect(root.topic(.events, for: calf) == "massage/v1/clinic-1/m_07/events")
        #expect(root.topic(.usage, for: calf) == "massage/v1/clinic-1/m_07/usage")
        #expect(root.topic(.cmd, for: calf) == "massage/v1/clinic-1/m_07/cmd")
        #expect(root.topic(.configDesired, for: calf) == "massage/v1/clinic-1/m_07/config/desired")
        #expect(root.topic(.configReported, for: calf) == "massage/v1/clinic-1/m_07/config/reported")
        #expect(root.consoleStateTopic == "massage/v1/_console/state")
        let custom = try TopicRoot("acme/massage/v2")
        #expect(custom.topic(.cmd, for: calf) == "acme/massage/v2/clinic-1/m_07/cmd")
    }

    @Test("QoS and retain flags follow the contract table")
    func qosAndRetain() {
        let table: [DeviceTopicKind: (Int, Bool, TopicPublisher)] = [
            .status: (1, true, .agent), .telemetry: (0, false, .agent), .events: (1, false, .agent),
            .usage: (1, true, .agent), .cmd: (1, false, .console), .configDesired: (1, true, .console),
            .configReported: (1, true, .agent),
        ]
        for kind in DeviceTopicKind.allCases {
            let expected = table[kind]!
            #expect(kind.qos == expected.0, "\(kind)")
            #expect(kind.retained == expected.1, "\(kind)")
            #expect(kind.publisher == expected.2, "\(kind)")
        }
    }

    @Test("every built topic parses back to its site, device and kind")
    func parseRoundTrip() throws {
        for kind in DeviceTopicKind.allCases {
            #expect(root.parse(root.topic(kind, for: calf)) == .device(calf, kind))
        }
        #expect(root.parse("massage/v1/_console/state") == .consoleState)
        let instance = try Identifier(validating: "console-a")
        #expect(root.parse(root.consoleReplyTopic(instance: instance)) == .consoleReply(instance: instance))
    }

    @Test("garbage topics parse to nil, with a reason when asked")
    func parseGarbage() {
        let garbage = [
            "", "massage", "massage/v1", "massage/v1/", "massage/v2/s/d/status", "other/v1/s/d/status",
            "massage/v1/s/d", "massage/v1/s/d/", "massage/v1/s/d/status/extra", "massage/v1/s/d/config",
            "massage/v1/s/d/config/other", "massage/v1/S/d/status", "massage/v1/s/D/status", "massage/v1//d/status",
            "massage/v1/s//status", "massage/v1/+/+/status", "massage/v1/#", "massage/v1/_console",
            "massage/v1/_console/other", "massage/v1/_console/reply/Bad", "massage/v1/s/d/STATUS",
            "massage/v1/-s/d/status", "massage/v1/s/d/telemetry\u{0}", "massage/v1s/d/status", "$SYS/broker/load",
        ]
        for topic in garbage {
            #expect(root.parse(topic) == nil, "\(topic)")
            #expect(throws: TopicError.self) { try root.parseTopic(topic) }
        }
        #expect(throws: TopicError.self) { try root.parseTopic("massage/v1/Site/d/status") }
        do {
            _ = try root.parseTopic("massage/v1/Site/d/status")
        } catch {
            #expect(error.message.contains("\"Site\""))
        }
    }

    @Test("a configured root is validated")
    func rootValidation() throws {
        #expect(try TopicRoot("massage/v1").rawValue == "massage/v1")
        #expect(try TopicRoot("fleet").rawValue == "fleet")
        for bad in ["", "/massage", "massage/", "massage//v1", "massage/+", "massage/#", "$SYS", "a\u{0}b",
                    String(repeating: "a", count: 300)] {
            #expect(throws: TopicError.self, "\(bad)") { try TopicRoot(bad) }
        }
    }

    @Test("subscription filters for console and agent")
    func filters() throws {
        let site = try Identifier(validating: "clinic-1")
        #expect(root.filter(.status) == "massage/v1/+/+/status")
        #expect(root.filter(.configReported) == "massage/v1/+/+/config/reported")
        #expect(root.filter(.events, site: site) == "massage/v1/clinic-1/+/events")
        #expect(root.everythingFilter == "massage/v1/#")
        #expect(root.agentMessageFilters() == [
            "massage/v1/+/+/status", "massage/v1/+/+/telemetry", "massage/v1/+/+/events", "massage/v1/+/+/usage",
            "massage/v1/+/+/config/reported",
        ])
        #expect(root.agentSubscriptions(for: calf) == [
            "massage/v1/clinic-1/m_07/cmd", "massage/v1/clinic-1/m_07/config/desired",
        ])
    }

    @Test("MQTT 5 shared subscriptions are $share/{group}/{filter}")
    func sharedSubscriptions() throws {
        #expect(try TopicRoot.sharedSubscription(group: "console", filter: root.filter(.events))
            == "$share/console/massage/v1/+/+/events")
        for bad in ["", "a/b", "a+", "#"] {
            #expect(throws: TopicError.self) { try TopicRoot.sharedSubscription(group: bad, filter: "x/#") }
        }
        #expect(throws: TopicError.self) { try TopicRoot.sharedSubscription(group: "g", filter: "") }
        #expect(throws: TopicError.self) { try TopicRoot.sharedSubscription(group: "g", filter: "$share/h/x") }
    }

    @Test("reply_to topics must be publishable")
    func publishTopics() {
        #expect(TopicRoot.isValidPublishTopic("massage/v1/_console/reply/console-a"))
        for bad in ["", "a/+/b", "a/#", "$SYS/x", "a\u{0}"] {
            #expect(!TopicRoot.isValidPublishTopic(bad), "\(bad)")
        }
    }
}
