import CMosquitto
#if canImport(Glibc)
import Glibc
#endif

/// A libmosquitto property list owned by Swift; freed in `deinit`.
/// Used only within one call (built, passed to libmosquitto, dropped).
final class CPropertyList {
    var head: OpaquePointer?

    init() {}

    deinit { mosquitto_property_free_all(&head) }

    /// Hands ownership to libmosquitto (for `mosquitto_will_set_v5`, which frees on success).
    func release() -> OpaquePointer? {
        defer { head = nil }
        return head
    }

    func check(_ rc: Int32, _ what: String) throws {
        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
            throw MQTTError.mosquitto(rc, "setting MQTT 5 property \(what)")
        }
    }

    func addInt32(_ id: mqtt5_property, _ value: UInt32) throws {
        try check(mosquitto_property_add_int32(&head, Int32(id.rawValue), value), "\(id.rawValue)")
    }

    func addByte(_ id: mqtt5_property, _ value: UInt8) throws {
        try check(mosquitto_property_add_byte(&head, Int32(id.rawValue), value), "\(id.rawValue)")
    }

    func addString(_ id: mqtt5_property, _ value: String) throws {
        try check(mosquitto_property_add_string(&head, Int32(id.rawValue), value), "\(id.rawValue)")
    }

    func addBinary(_ id: mqtt5_property, _ value: [UInt8]) throws {
        guard value.count <= Int(UInt16.max) else {
            throw MQTTError(.invalidArgument, "binary property \(id.rawValue) is \(value.count) bytes; MQTT allows at most 65535")
        }
        let rc = value.withUnsafeBytes { raw in
            mosquitto_property_add_binary(&head, Int32(id.rawValue), raw.baseAddress, UInt16(value.count))
        }
        try check(rc, "\(id.rawValue)")
    }

    func addUserProperty(_ p: UserProperty) throws {
        try check(mosquitto_property_add_string_pair(&head, Int32(MQTT_PROP_USER_PROPERTY.rawValue), p.name, p.value), "user property '\(p.name)'")
    }
}

extension MQTTProperties {
    /// Builds the C list for PUBLISH or will properties.
    func makeCList(willDelay: UInt32? = nil) throws -> CPropertyList {
        let list = CPropertyList()
        if let v = payloadFormatIndicator { try list.addByte(MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, v) }
        if let v = messageExpiryInterval { try list.addInt32(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, v) }
        if let v = contentType { try list.addString(MQTT_PROP_CONTENT_TYPE, v) }
        if let v = responseTopic { try list.addString(MQTT_PROP_RESPONSE_TOPIC, v) }
        if let v = correlationData { try list.addBinary(MQTT_PROP_CORRELATION_DATA, v) }
        if let v = willDelay { try list.addInt32(MQTT_PROP_WILL_DELAY_INTERVAL, v) }
        for p in userProperties { try list.addUserProperty(p) }
        return list
    }

    /// Reads the properties this client understands from a received list.
    /// Values libmosquitto hands out are heap copies; they are freed here.
    init(reading list: OpaquePointer?) {
        self.init()
        var node = list
        while let current = node {
            let id = mosquitto_property_identifier(current)
            switch UInt32(id) {
            case MQTT_PROP_RESPONSE_TOPIC.rawValue:
                responseTopic = Self.readString(current, id)
            case MQTT_PROP_CONTENT_TYPE.rawValue:
                contentType = Self.readString(current, id)
            case MQTT_PROP_CORRELATION_DATA.rawValue:
                var value: UnsafeMutableRawPointer?
                var length: UInt16 = 0
                if mosquitto_property_read_binary(current, id, &value, &length, false) != nil, let value {
                    correlationData = Array(UnsafeRawBufferPointer(start: value, count: Int(length)))
                    free(value)
                } else {
                    correlationData = []
                }
            case MQTT_PROP_MESSAGE_EXPIRY_INTERVAL.rawValue:
                var value: UInt32 = 0
                if mosquitto_property_read_int32(current, id, &value, false) != nil { messageExpiryInterval = value }
            case MQTT_PROP_PAYLOAD_FORMAT_INDICATOR.rawValue:
                var value: UInt8 = 0
                if mosquitto_property_read_byte(current, id, &value, false) != nil { payloadFormatIndicator = value }
            case MQTT_PROP_USER_PROPERTY.rawValue:
                var name: UnsafeMutablePointer<CChar>?
                var value: UnsafeMutablePointer<CChar>?
                if mosquitto_property_read_string_pair(current, id, &name, &value, false) != nil {
                    userProperties.append(UserProperty(name.map { String(cString: $0) } ?? "", value.map { String(cString: $0) } ?? ""))
                }
                free(name)
                free(value)
            default:
                break
            }
            node = mosquitto_property_next(current)
        }
    }

    private static func readString(_ p: OpaquePointer, _ id: Int32) -> String? {
        var value: UnsafeMutablePointer<CChar>?
        guard mosquitto_property_read_string(p, id, &value, false) != nil, let value else { return nil }
        defer { free(value) }
        return String(cString: value)
    }
}
