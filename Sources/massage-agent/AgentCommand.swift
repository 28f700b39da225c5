import ArgumentParser
import Foundation
import Logging
import FleetProtocol
import FleetSettings
import MassageAgent
import MassageEngine
import MassagerLink
import ServiceLifecycle
import UnixSignals

/// `massage-agent --config FILE [overrides]`: parses arguments, loads the
/// configuration, and runs the agent in a ServiceGroup until SIGTERM/SIGINT.
@main
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "massage-agent",
        abstract: "Runs a leg massager on the MassageFleet: the massage engine, MQTT commands, durable reporting.",
        discussion: "Configuration is YAML (see Config/agent.yaml). Flags override the file. A bad configuration exits with status 2.",
        version: AgentService.version)

    @Option(name: .long, help: "The agent's YAML configuration file.")
    var config: String?
    @Option(help: "Site id (overrides `site`).") var site: String?
    @Option(help: "Device id (overrides `device`).") var device: String?
    @Option(help: "Broker as HOST:PORT (overrides `broker.host`/`broker.port`).") var broker: String?
    @Option(name: .customLong("data-dir"), help: "Directory for the agent's database (overrides `data_dir`).") var dataDir: String?
    @Option(help: "Run simulated time N× faster (demos, tests; default 1).") var speed: Double?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.") var logLevel: String?

    /// Like ArgumentParser's main, but a bad flag exits with status 2 (as a
    /// bad configuration does) instead of 64.
    static func main() async {
        let command: AgentCommand
        do { command = try parse() } catch {
            if exitCode(for: error) == .success { exit(withError: error) } // --help, --version
            FileHandle.standardError.write(Data("massage-agent: \(fullMessage(for: error))\n\(helpMessage())\n".utf8))
            exit(withError: ExitCode(2))
        }
        do { try await command.run() } catch { exit(withError: error) }
    }

    func run() async throws {
        // From here on a SIGHUP is logged and ignored (HangupNotice), not the end of the process.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let configuration: AgentConfiguration
        do throws(ConfigurationError) {
            configuration = try AgentConfiguration.load(
                file: config.map { URL(fileURLWithPath: $0) },
                overrides: AgentOverrides(site: site, device: device, broker: broker, dataDirectory: dataDir, speed: speed, logLevel: logLevel))
            // A connection without TLS only when asked for (issue 20, item 12).
            let transport = configuration.broker.transportProblems
            if !transport.isEmpty { throw ConfigurationError(source: config ?? "command line", problems: transport) }
        } catch {
            FileHandle.standardError.write(Data("massage-agent: \(error.description)\n".utf8))
            throw ExitCode(2)
        }
        let level = configuration.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "massage-agent")
        logger[metadataKey: "device"] = "\(configuration.address)"
        for warning in configuration.broker.transportWarnings { logger.warning("\(warning)") }
        // Before anything else runs: from here on the code stays resident.
        if configuration.lockMemory {
            let report = MemoryLock.lock()
            if let problem = report.problem {
                logger.warning("memory not locked: the control path may wait for storage under memory pressure",
                               metadata: ["memory.problem": "\(problem)"])
            } else {
                logger.info("memory locked", metadata: ["memory.code_locked": "\(report.codeBytes >> 10) KiB"])
            }
        }
        // A controller board over Modbus, or the simulator (with its test control when asked).
        let controller: (any MassagerHardware)?
        do {
            controller = try Self.openHardware(configuration)
        } catch {
            FileHandle.standardError.write(Data("massage-agent: \(error.description)\n".utf8))
            throw ExitCode(1)
        }
        let hardware = AgentHardware(configuration: configuration)
        let agent: AgentService
        do {
            agent = try AgentService(configuration: configuration, dependencies: .init(hardware: controller ?? hardware.hardware), logger: logger)
        } catch let error as ConfigurationError {
            FileHandle.standardError.write(Data("massage-agent: \(error.description)\n".utf8))
            throw ExitCode(2)
        } catch {
            FileHandle.standardError.write(Data("massage-agent: cannot start: \(error)\n".utf8))
            throw ExitCode(1)
        }
        var services: [any Service] = [agent, HangupNotice(hangups: hangups, logger: logger)]
        if let control = hardware.testControl, let socket = configuration.testControlSocket {
            // Test only (hardware.test_control). Last, so it stops first.
            services.append(TestControlServer(path: socket.path, control: control, panel: .init(agent: agent), logger: logger))
        }
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    /// The controller board named by `hardware:`, its link open and its
    /// ceilings checked against the agent's limits; nil for the simulator.
    static func openHardware(_ configuration: AgentConfiguration) throws(ModbusLinkError) -> (any MassagerHardware)? {
        let settings: LinkSettings
        switch configuration.hardware {
        case .simulated: return nil
        case .modbusTCP(let host, let port, let unit, let timeout):
            settings = LinkSettings(transport: .tcp(host: host, port: port), unit: unit, timeoutMilliseconds: timeout)
        case .modbusRTU(let device, let baud, let parity, let unit, let timeout):
            settings = LinkSettings(transport: .rtu(device: device, baud: baud, parity: LinkSettings.Parity(rawValue: parity) ?? .none),
                                    unit: unit, timeoutMilliseconds: timeout)
        }
        let massager = try ModbusMassager(settings: settings)
        let limits: EngineLimits
        do { limits = try EngineLimits(overrides: configuration.limits) } catch {
            throw ModbusLinkError(.settings, "limits: \(error)")
        }
        try massager.check(limits: limits)
        return massager
    }
}
