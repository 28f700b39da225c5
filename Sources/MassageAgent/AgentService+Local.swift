import MassageEngine

/// What a person at the device (or the fleet simulator standing in for one)
/// can do and see without the network.
extension AgentService {
    /// Starts a program from the device's own panel: the person is there, so
    /// a pain lockout does not refuse it (a fault or a held button still does).
    public func startLocally(program: String, intensity: Int? = nil) throws(EngineError) -> SessionID {
        try engine.start(.program(program, intensity: intensity, origin: .local))
    }

    /// Acknowledges the latched faults from the device's own panel.
    @discardableResult
    public func acknowledgeFaultsLocally() throws(EngineError) -> FaultAcknowledgement {
        try engine.acknowledgeFaults()
    }

    public var isInSession: Bool { engine.telemetry().state != .idle }
    public var isConnected: Bool { client.isConnected }
    public var usageCounters: UsageCounters { engine.usage() }
    public var programIDs: [String] { engine.programs.ids }
    public var deviceAddress: String { "\(configuration.address)" }
    /// Events this agent has numbered in its current epoch (the last `seq`
    /// on its events topic): what a console must end up storing.
    public var eventsNumbered: UInt64 { stamper.last(.events) }
    /// Messages in the outbox not yet acknowledged by the broker (0 when the
    /// database cannot be read).
    public var outboxBacklog: Int { get async { await outbox.count } }
}
