import MassageEngine

/// The hardware `massage-agent` runs: the simulator seeded by
/// `hardware.seed`, wrapped in the test control when
/// `hardware.test_control` is set (test only).
public struct AgentHardware: Sendable {
    public let hardware: any MassagerHardware
    /// Non-nil when `hardware.test_control` is set.
    public let testControl: SimulatorTestControl?

    public init(configuration: AgentConfiguration) {
        let simulator = SimulatedMassager(seed: configuration.hardwareSeed)
        if configuration.testControlSocket != nil {
            let control = SimulatorTestControl(simulator: simulator)
            hardware = control
            testControl = control
        } else {
            hardware = simulator
            testControl = nil
        }
    }
}
