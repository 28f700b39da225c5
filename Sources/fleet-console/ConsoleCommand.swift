import ArgumentParser
import FleetConsole
import FleetConsoleClient
import FleetProtocol
import FleetSettings
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

@main
struct ConsoleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet-console",
        abstract: "MassageFleet console: serve the fleet's API and dashboard, or talk to a running console.",
        subcommands: [Serve.self, Devices.self, Device.self, Start.self, Stop.self, SendCommand.self, Alerts.self, Usage.self, Audit.self, Forget.self, RolloutCommand.self, HashToken.self, MigrateDB.self])

    /// Like ArgumentParser's main, but a bad flag exits with status 2 instead of 64.
    static func main() async {
        var command: any ParsableCommand
        do { command = try parseAsRoot() } catch {
            if exitCode(for: error) == .success { exit(withError: error) }
            FileHandle.standardError.write(Data("fleet-console: \(fullMessage(for: error))\n".utf8))
            exit(withError: ExitCode(2))
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

// MARK: serve

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the console: ingest, health, commands, HTTP API.")
    @Option(help: "The console's YAML configuration file.") var config: String?
    @Option(help: "Broker as HOST:PORT.") var broker: String?
    @Option(help: "HTTP address as HOST:PORT (default 127.0.0.1:8080).") var http: String?
    @Option(help: "The database: a SQLite file path, or postgres://USER@HOST:PORT/DB[?sslmode=…&sslrootcert=CA] (the password in PGPASSWORD or database_password_file, never in the URL).") var db: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.") var logLevel: String?
    @Option(help: "Run as the replica NAME of several consoles sharing one PostgreSQL database (docs/scaling.md).") var replica: String?

    func run() async throws {
        // From here on SIGHUP reloads the tokens (TokenReloader) instead of
        // ending the process.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let file = config.map { URL(fileURLWithPath: $0) }
        let overrides = ConsoleOverrides(broker: broker, http: http, database: db, logLevel: logLevel,
                                         adminToken: ProcessInfo.processInfo.environment["FLEET_CONSOLE_ADMIN_TOKEN"], replica: replica)
        let configuration: ConsoleConfiguration
        do throws(ConfigurationError) {
            configuration = try ConsoleConfiguration.load(file: file, overrides: overrides)
            // A broker connection without TLS only when asked for (issue 20, item 12).
            let transport = configuration.transportProblems
            if !transport.isEmpty { throw ConfigurationError(source: config ?? "command line", problems: transport) }
        } catch {
            FileHandle.standardError.write(Data("fleet-console: \(error.description)\n".utf8))
            throw ExitCode(2)
        }
        let level = configuration.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "fleet-console")
        for warning in configuration.transportWarnings { logger.warning("\(warning)") }
        if configuration.tokens.isEmpty {
            logger.warning("no API tokens are configured: every API request will be refused (add tokens, or set FLEET_CONSOLE_ADMIN_TOKEN)")
        }
        let core: ConsoleCore
        do { core = try await ConsoleCore(configuration: configuration, logger: logger) } catch {
            FileHandle.standardError.write(Data("fleet-console: cannot start: \(error)\n".utf8))
            throw ExitCode(1)
        }
        let app = try HTTPAPI.makeApplication(core: core, logger: logger)
        let reloader = TokenReloader(hangups: hangups, core: core, logger: logger) { () throws(ConfigurationError) -> [TokenEntry] in
            try ConsoleConfiguration.load(file: file, overrides: overrides).tokens
        }
        let group = ServiceGroup(configuration: .init(services: [core, app, reloader], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

struct HashToken: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "hash-token", abstract: "Print the SHA-256 of a token (read from standard input) for the config's tokens list.")
    func run() throws {
        guard let token = readLine(strippingNewline: true), !token.isEmpty else {
            throw ValidationError("give the token on standard input, e.g.: printf %s \"$TOKEN\" | fleet-console hash-token")
        }
        print(TokenEntry.hex(TokenEntry.hash(token)))
    }
}

// MARK: client

struct ClientOptions: ParsableArguments {
    @Option(help: "The console's base URL.") var api = ProcessInfo.processInfo.environment["FLEET_CONSOLE_API"] ?? "http://127.0.0.1:8080"
    @Flag(help: "Print the API's JSON instead of a table.") var json = false
}

extension ConsoleClient {
    /// The client for a subcommand: `--api`, and the token in FLEET_CONSOLE_TOKEN.
    init(_ options: ClientOptions) throws(CLIError) {
        guard let token = ProcessInfo.processInfo.environment["FLEET_CONSOLE_TOKEN"], !token.isEmpty else {
            throw CLIError("set FLEET_CONSOLE_TOKEN to an API token (fleet-console hash-token explains how tokens are stored)")
        }
        self.init(api: options.api, token: token)
    }
}

/// A mistake in a client subcommand's arguments or files, said to the user.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ text: String) { description = text }
}

func printTable(_ table: TextTable) { print(table.text) }

func printJSON(_ data: Data) { print(ConsoleTables.prettyJSON(data)) }

/// Runs a client subcommand, turning failures into a message and exit 1.
func runClient(_ body: () async throws -> Void) async throws {
    do { try await body() } catch let error as CLIError {
        FileHandle.standardError.write(Data("fleet-console: \(error.description)\n".utf8))
        throw ExitCode(1)
    } catch let error as ConsoleClientError {
        FileHandle.standardError.write(Data("fleet-console: \(error.description)\n".utf8))
        throw ExitCode(1)
    }
}

struct Devices: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List devices (filters: --site, --state, --health).")
    @OptionGroup var options: ClientOptions
    @Option var site: String?
    @Option(help: "in_session, idle, offline, faulted or revoked.") var state: String?
    @Option(help: "ok, warning or critical.") var health: String?

    func run() async throws {
        try await runClient {
            let client = try ConsoleClient(options)
            var query: [String] = []
            if let site { query.append("site=\(site)") }
            if let state { query.append("state=\(state)") }
            if let health { query.append("health=\(health)") }
            struct List: Decodable { var devices: [DeviceSummary] }
            let (list, raw) = try await client.get("/api/v1/devices" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")), as: List.self)
            if options.json { return printJSON(raw) }
            printTable(ConsoleTables.devices(list.devices))
        }
    }
}

struct Device: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show one device: SITE/DEVICE.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "site/device") var address: String

    func run() async throws {
        try await runClient {
            let client = try ConsoleClient(options)
            let (detail, raw) = try await client.get("/api/v1/devices/\(address)", as: DeviceDetail.self)
            if options.json { return printJSON(raw) }
            print(ConsoleTables.deviceHeadline(detail).joined(separator: "\n"))
            print("")
            printTable(ConsoleTables.sessions(detail.recentSessions))
        }
    }
}

struct TargetOptions: ParsableArguments {
    @Option(help: "Site id.") var site: String?
    @Option(help: "Comma-separated device ids (within --site) or site/device addresses.") var devices: String?
    @Flag(name: .customLong("idle-only"), help: "Only devices that are online and not in a session.") var idleOnly = false
    @Option(name: .customLong("ttl"), help: "Seconds the command stays valid (default 60).") var ttl: Double?
    @Flag(help: "Wait until every device answered (or timed out) and show the results.") var wait = false

    var targets: CommandSubmission.Targets {
        .init(site: site, devices: devices?.split(separator: ",").map(String.init), idleOnly: idleOnly ? true : nil)
    }
}

/// Submits a command and prints its per-device results.
func submit(_ action: String, params: JSONValue?, targets: TargetOptions, options: ClientOptions) async throws {
    let client = try ConsoleClient(options)
    let body = try FleetJSON.encode(CommandSubmission(action: action, params: params, targets: targets.targets, ttlSeconds: targets.ttl))
    var raw = try await client.call("POST", "/api/v1/commands", body: body)
    var record = try FleetJSON.makeDecoder().decode(CommandRecord.self, from: raw)
    if targets.wait {
        let deadline = Date().addingTimeInterval(max(35, (targets.ttl ?? 60) + 5))
        while !record.isFinished, Date() < deadline {
            let done = record.results.filter { $0.state.isFinal }.count
            FileHandle.standardError.write(Data("\rwaiting for replies: \(done)/\(record.results.count)".utf8))
            try await Task.sleep(for: .milliseconds(250))
            (record, raw) = try await client.get("/api/v1/commands/\(record.id)", as: CommandRecord.self)
        }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
    if options.json { return printJSON(raw) }
    print("command \(record.id) (\(record.action)), expires \(ConsoleTables.when(record.expiresAt))")
    printTable(ConsoleTables.commandResults(record))
    if record.results.contains(where: { $0.state == .failed || $0.state == .timedOut || $0.state == .expired }) { throw ExitCode(3) }
}

struct Start: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Start a program on devices: --site S [--devices a,b] [--idle-only] --program P.")
    @OptionGroup var options: ClientOptions
    @OptionGroup var targets: TargetOptions
    @Option(help: "Program id.") var program: String
    @Option(help: "Session intensity 1–10.") var intensity: Int?

    func run() async throws {
        try await runClient {
            var params: [String: JSONValue] = ["program": .string(program)]
            if let intensity { params["intensity"] = .number(Double(intensity)) }
            try await submit("start_session", params: .object(params), targets: targets, options: options)
        }
    }
}

struct Stop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop the running session on devices.")
    @OptionGroup var options: ClientOptions
    @OptionGroup var targets: TargetOptions
    func run() async throws {
        try await runClient { try await submit("stop_session", params: nil, targets: targets, options: options) }
    }
}

struct SendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "command", abstract: "Send any action (--params JSON), or --show ID to see a command's results.")
    @OptionGroup var options: ClientOptions
    @OptionGroup var targets: TargetOptions
    @Argument(help: "start_session, schedule_session, cancel_scheduled, stop_session, pause_session, resume_session, adjust_intensity, get_status, resync, ping, clear_fault") var action: String?
    @Option(help: "The action's params as a JSON object.") var params: String?
    @Option(help: "Show an earlier command's results.") var show: String?

    func run() async throws {
        try await runClient {
            if let show {
                let client = try ConsoleClient(options)
                let (record, raw) = try await client.get("/api/v1/commands/\(show)", as: CommandRecord.self)
                if options.json { return printJSON(raw) }
                printTable(ConsoleTables.commandResults(record))
                return
            }
            guard let action else { throw CLIError("give an action, or --show ID") }
            var parsed: JSONValue?
            if let params {
                switch FleetJSON.parse(Array(params.utf8)) {
                case .success(let v): parsed = v
                case .failure(let e): throw CLIError("--params: \(e.message)")
                }
            }
            try await submit(action, params: parsed, targets: targets, options: options)
        }
    }
}

struct Alerts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List alerts (--all for cleared ones too), or --ack ID.")
    @OptionGroup var options: ClientOptions
    @Flag(help: "Include cleared alerts.") var all = false
    @Option(help: "Acknowledge an alert by id.") var ack: Int64?

    func run() async throws {
        try await runClient {
            let client = try ConsoleClient(options)
            if let ack {
                let raw = try await client.call("POST", "/api/v1/alerts/\(ack)/ack")
                return options.json ? printJSON(raw) : print("alert \(ack) acknowledged")
            }
            struct List: Decodable { var alerts: [AlertRecord] }
            let (list, raw) = try await client.get("/api/v1/alerts?active=\(!all)", as: List.self)
            if options.json { return printJSON(raw) }
            printTable(ConsoleTables.alerts(list.alerts))
        }
    }
}

struct Usage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Usage per site and day (--site, --from, --to as YYYY-MM-DD).")
    @OptionGroup var options: ClientOptions
    @Option var site: String?
    @Option var from: String?
    @Option var to: String?

    func run() async throws {
        try await runClient {
            let client = try ConsoleClient(options)
            var query: [String] = []
            if let site { query.append("site=\(site)") }
            if let from { query.append("from=\(from)") }
            if let to { query.append("to=\(to)") }
            let (report, raw) = try await client.get("/api/v1/usage" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")), as: UsageReport.self)
            if options.json { return printJSON(raw) }
            printTable(ConsoleTables.usage(report))
        }
    }
}

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The audit log of operator actions (admin).")
    @OptionGroup var options: ClientOptions
    @Option var limit = 50

    func run() async throws {
        try await runClient {
            let client = try ConsoleClient(options)
            struct List: Decodable { var entries: [AuditEntry] }
            let (list, raw) = try await client.get("/api/v1/audit?limit=\(limit)", as: List.self)
            if options.json { return printJSON(raw) }
            printTable(ConsoleTables.audit(list.entries))
        }
    }
}

struct Forget: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Forget a device (admin): drop what the console knows of SITE/DEVICE and show it revoked until it connects again with new credentials.",
        discussion: "Run it after provision.sh revoke (which runs it when FLEET_CONSOLE_API and a token are set). Sessions, daily usage, alert history and the audit log are kept; docs/operations.md says why.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "site/device") var address: String
    @Option(help: "Why, for the audit log.") var reason: String?

    func run() async throws {
        try await runClient {
            let parts = address.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw CLIError("expected SITE/DEVICE, e.g. clinic-north/massager-07, got \"\(address)\"")
            }
            let client = try ConsoleClient(options)
            let raw = try await client.call("POST", "/api/v1/devices/\(parts[0])/\(parts[1])/forget", body: try FleetJSON.encode(ForgetRequest(reason: reason)))
            if options.json { return printJSON(raw) }
            let r = try FleetJSON.makeDecoder().decode(ForgetResult.self, from: raw)
            printTable(ConsoleTables.forgotten(r))
        }
    }
}
