import CMosquitto
@testable import Mosquitto
import Testing

@Suite("MQTTError messages")
struct ErrorMappingTests {
    @Test("a failure reason code on an acknowledgement becomes a clear error")
    func rejectedReasonCodes() {
        let denied = MQTTError.rejected(0x87, "publishing to 'a/b'")
        #expect(denied.code == .notAuthorized)
        #expect(denied.message == "publishing to 'a/b': not authorised by the broker's ACL")
        let quota = MQTTError.rejected(0x97, "publishing to 'a/b'")
        #expect(quota.code == .brokerRejected)
        #expect(quota.reasonCode == 0x97)
        #expect(quota.message.contains("reason code 151"))
    }

    @Test("CONNACK refusals name the client and what to check")
    func connackRefusals() {
        for reason in [4, 5, 134, 135] {
            let e = MQTTError.connack(reason, host: "h", port: 1, clientID: "dev-7")
            #expect(e.code == .notAuthorized)
            #expect(e.message.hasPrefix("not authorised: check username/password for client 'dev-7'"))
        }
        #expect(MQTTError.connack(132, host: "h", port: 1, clientID: "c").code == .protocolError)
        #expect(MQTTError.connack(133, host: "h", port: 1, clientID: "c").code == .invalidArgument)
    }

    @Test("libmosquitto error codes map to stable codes with context")
    func mosquittoCodes() {
        #expect(MQTTError.mosquitto(MOSQ_ERR_NO_CONN.rawValue, "publishing").code == .notConnected)
        #expect(MQTTError.mosquitto(MOSQ_ERR_CONN_LOST.rawValue, "x").code == .connectionLost)
        #expect(MQTTError.mosquitto(MOSQ_ERR_TLS.rawValue, "x").code == .tls)
        #expect(MQTTError.mosquitto(MOSQ_ERR_MALFORMED_UTF8.rawValue, "x").code == .invalidArgument)
        #expect(MQTTError.mosquitto(MOSQ_ERR_OVERSIZE_PACKET.rawValue, "publishing to 't'").message.hasPrefix("publishing to 't': "))
    }
}
