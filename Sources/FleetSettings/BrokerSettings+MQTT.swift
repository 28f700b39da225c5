import Mosquitto

extension MQTTConfiguration {
    /// A client configuration from a configuration file's `broker:` section.
    public init(broker: BrokerSettings, clientID: String) {
        self.init(host: broker.host, port: broker.port, clientID: clientID)
        username = broker.username
        password = broker.password
        if let ca = broker.caFile {
            tls = TLSConfiguration(caFile: ca, certificateFile: broker.certificateFile, keyFile: broker.keyFile, verifyHostname: broker.verifyHostname)
        }
        keepAliveSeconds = broker.keepAliveSeconds
        reconnect = ReconnectPolicy(initialDelay: .milliseconds(broker.reconnectInitialMilliseconds), maximumDelay: .milliseconds(broker.reconnectMaximumMilliseconds))
    }
}
