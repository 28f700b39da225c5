import CMosquitto
import Glibc

/// The one error type of the Mosquitto module. Every `MOSQ_ERR_*` value and
/// every MQTT 5 reason code a broker can send back becomes an `MQTTError`
/// here, and nowhere else, with a message a person can act on.
///
/// Modelled as a struct over an extensible code (like swift-service-lifecycle's
/// errors) so that codes can be added without breaking exhaustive switches.
public struct MQTTError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Sendable {
            case notConnected = "not_connected"
            case connectionLost = "connection_lost"
            case connectionRefused = "connection_refused"
            case notAuthorized = "not_authorized"
            case tls = "tls"
            case timeout = "timeout"
            case invalidArgument = "invalid_argument"
            case protocolError = "protocol_error"
            case brokerRejected = "broker_rejected"
            case tooManyInFlight = "too_many_in_flight"
            case shutdown = "shutdown"
            case system = "system"
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The client has no connection to the broker right now (fails fast;
        /// durable queuing is the caller's job).
        public static let notConnected = Code(.notConnected)
        /// The connection dropped before the broker acknowledged the request.
        public static let connectionLost = Code(.connectionLost)
        /// The broker could not be reached or refused the connection.
        public static let connectionRefused = Code(.connectionRefused)
        /// The broker refused the credentials or the ACL denied the request.
        public static let notAuthorized = Code(.notAuthorized)
        /// TLS set-up or handshake failed (CA, certificate, hostname).
        public static let tls = Code(.tls)
        /// No answer within the configured deadline.
        public static let timeout = Code(.timeout)
        /// The request itself is wrong (topic, QoS, property, file path).
        public static let invalidArgument = Code(.invalidArgument)
        /// The broker or the library saw a protocol violation.
        public static let protocolError = Code(.protocolError)
        /// The broker answered with a failure reason code (≥ 0x80).
        public static let brokerRejected = Code(.brokerRejected)
        /// The bounded window of unacknowledged publishes is full.
        public static let tooManyInFlight = Code(.tooManyInFlight)
        /// The client was shut down.
        public static let shutdown = Code(.shutdown)
        /// An operating-system or library failure (memory, errno).
        public static let system = Code(.system)

        public var description: String { base.rawValue }
    }

    public let code: Code
    public let message: String
    /// The MQTT 5 reason code the broker sent, when it sent one.
    public let reasonCode: Int?
    /// The libmosquitto error (`MOSQ_ERR_*`), when the library reported one.
    public let mosquittoError: Int32?

    public init(_ code: Code, _ message: String, reasonCode: Int? = nil, mosquittoError: Int32? = nil) {
        self.code = code
        self.message = message
        self.reasonCode = reasonCode
        self.mosquittoError = mosquittoError
    }

    public var description: String { message }
}

extension MQTTError {
    /// Translates a libmosquitto return value. `context` says what was being
    /// done ("connecting to 127.0.0.1:1883 as 'agent-1'").
    static func mosquitto(_ rc: Int32, _ context: String, detail: String? = nil) -> MQTTError {
        let library = String(cString: mosquitto_strerror(rc))
        let suffix = detail.map { " (\($0))" } ?? ""
        func err(_ code: Code, _ text: String) -> MQTTError {
            MQTTError(code, "\(context): \(text)\(suffix)", mosquittoError: rc)
        }
        switch rc {
        case MOSQ_ERR_NO_CONN.rawValue:
            return err(.notConnected, "not connected to the broker")
        case MOSQ_ERR_CONN_LOST.rawValue:
            return err(.connectionLost, "the connection to the broker was lost")
        case MOSQ_ERR_KEEPALIVE.rawValue:
            return err(.connectionLost, "the broker stopped answering within the keepalive interval")
        case MOSQ_ERR_CONN_REFUSED.rawValue:
            return err(.connectionRefused, "the broker refused the connection")
        case MOSQ_ERR_ERRNO.rawValue where [EBADF, EPIPE, ECONNRESET, ENOTCONN].contains(Glibc.errno):
            // A write on a socket that was just closed: the connection is gone.
            return err(.connectionLost, "the connection to the broker was closed (\(systemErrorText()))")
        case MOSQ_ERR_ERRNO.rawValue:
            return err(.connectionRefused, "\(systemErrorText()); check that the broker is running and the host and port are right")
        case MOSQ_ERR_EAI.rawValue, MOSQ_ERR_LOOKUP.rawValue:
            return err(.connectionRefused, "the broker's host name could not be resolved; check the host")
        case MOSQ_ERR_AUTH.rawValue, MOSQ_ERR_ACL_DENIED.rawValue:
            return err(.notAuthorized, "not authorised; check the username, password and the broker's ACL")
        case MOSQ_ERR_TLS.rawValue, MOSQ_ERR_TLS_HANDSHAKE.rawValue, MOSQ_ERR_OCSP.rawValue:
            return err(.tls, "TLS failed; check the CA file, the client certificate and key, and that the broker's certificate names this host")
        case MOSQ_ERR_INVAL.rawValue:
            return err(.invalidArgument, "invalid argument (\(library))")
        case MOSQ_ERR_MALFORMED_UTF8.rawValue:
            return err(.invalidArgument, "a topic or string is not valid UTF-8 or contains characters MQTT forbids")
        case MOSQ_ERR_PAYLOAD_SIZE.rawValue, MOSQ_ERR_OVERSIZE_PACKET.rawValue:
            return err(.invalidArgument, "the message is larger than the broker accepts")
        case MOSQ_ERR_QOS_NOT_SUPPORTED.rawValue:
            return err(.invalidArgument, "the broker does not support this QoS")
        case MOSQ_ERR_RETAIN_NOT_SUPPORTED.rawValue:
            return err(.invalidArgument, "the broker does not support retained messages")
        case MOSQ_ERR_DUPLICATE_PROPERTY.rawValue, MOSQ_ERR_NOT_SUPPORTED.rawValue:
            return err(.invalidArgument, "an MQTT 5 property is duplicated or not allowed here")
        case MOSQ_ERR_PROTOCOL.rawValue, MOSQ_ERR_MALFORMED_PACKET.rawValue:
            return err(.protocolError, "protocol error between client and broker")
        case MOSQ_ERR_NOMEM.rawValue:
            return err(.system, "out of memory")
        case MOSQ_ERR_TIMEOUT.rawValue:
            return err(.timeout, "timed out")
        default:
            return err(.system, library)
        }
    }

    /// Translates a CONNACK reason code (MQTT 5, or the 3.1.1 return codes
    /// libmosquitto reports the same way).
    static func connack(_ reason: Int, host: String, port: Int, clientID: String) -> MQTTError {
        let who = "broker \(host):\(port) refused client '\(clientID)'"
        switch reason {
        case 4, 5, Int(MQTT_RC_BAD_USERNAME_OR_PASSWORD.rawValue), Int(MQTT_RC_NOT_AUTHORIZED.rawValue):
            // mosquitto answers a wrong password with "not authorized" (135), so both read the same.
            return MQTTError(.notAuthorized, "not authorised: check username/password for client '\(clientID)' (\(who): \(reasonText(reason)))", reasonCode: reason)
        case Int(MQTT_RC_BANNED.rawValue):
            return MQTTError(.notAuthorized, "\(who): client is banned", reasonCode: reason)
        case 2, Int(MQTT_RC_CLIENTID_NOT_VALID.rawValue):
            return MQTTError(.invalidArgument, "\(who): client id not valid; use 1–23 characters of [0-9a-zA-Z] or configure the broker to accept it", reasonCode: reason)
        case 1, Int(MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION.rawValue):
            return MQTTError(.protocolError, "\(who): the broker does not speak MQTT 5; upgrade it (mosquitto ≥ 1.6)", reasonCode: reason)
        case 3, Int(MQTT_RC_SERVER_UNAVAILABLE.rawValue), Int(MQTT_RC_SERVER_BUSY.rawValue):
            return MQTTError(.connectionRefused, "\(who): server unavailable or busy; will retry", reasonCode: reason)
        default:
            return MQTTError(.connectionRefused, "\(who): \(reasonText(reason))", reasonCode: reason)
        }
    }

    /// Translates a failure reason code (≥ 0x80) on PUBACK/PUBREC/SUBACK/UNSUBACK.
    static func rejected(_ reason: Int, _ context: String) -> MQTTError {
        if reason == Int(MQTT_RC_NOT_AUTHORIZED.rawValue) {
            return MQTTError(.notAuthorized, "\(context): not authorised by the broker's ACL", reasonCode: reason)
        }
        return MQTTError(.brokerRejected, "\(context): broker answered \(reasonText(reason)) (reason code \(reason))", reasonCode: reason)
    }

    static func reasonText(_ reason: Int) -> String {
        String(cString: mosquitto_reason_string(Int32(reason)))
    }
}
