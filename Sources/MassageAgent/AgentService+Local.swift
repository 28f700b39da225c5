import MassageEngine

/// What a person at the device (or the fleet simulator standing in for one)
/// can do and see without the network.
extension AgentService {
    /// Starts a program from the device's own panel.
    public func startLocally(program: String, intensity: Int? = nil) throws(EngineError) -> SessionID {
        try engine.start(.program(program, intensity: intensity))
    }

    public var isInSession: Bool { engine.telemetry().state != .idle }
    public var isConnected: Bool { client.isConnected }
    public var usageCounters: UsageCounters { engine.usage() }
    public var programIDs: [String] { engine.programs.ids }
    public var deviceAddress: String { "\(configuration.address)" }
}
