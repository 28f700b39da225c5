import ArgumentParser
import FleetConsole
import FleetConsoleClient
import FleetProtocol
import Foundation

struct RolloutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollout",
        abstract: "Staged configuration rollouts: create FILE | status ID | list | pause ID | resume ID | abort ID.",
        subcommands: [Create.self, Status.self, List.self, Control.Pause.self, Control.Resume.self, Control.Abort.self])

    static func show(_ r: Rollout, raw: Data, json: Bool) {
        if json { return printJSON(raw) }
        print(ConsoleTables.rolloutHeadline(r).joined(separator: "\n"))
        print("")
        printTable(ConsoleTables.rolloutDevices(r))
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start a rollout from a YAML document (Config/rollouts/example.yaml).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The rollout document (YAML).") var file: String

        func run() async throws {
            try await runClient {
                let client = try ConsoleClient(options)
                let text: String
                do { text = try String(contentsOfFile: file, encoding: .utf8) } catch { throw CLIError("cannot read \(file): \(error.localizedDescription)") }
                let body: Data
                do { body = try RolloutDocument.json(fromYAML: text) } catch { throw CLIError("\(file) is not a valid rollout document: \(error)") }
                let raw = try await client.call("POST", "/api/v1/rollouts", body: body)
                RolloutCommand.show(try FleetJSON.makeDecoder().decode(Rollout.self, from: raw), raw: raw, json: options.json)
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a rollout's waves and per-device progress.")
        @OptionGroup var options: ClientOptions
        @Argument var id: String
        func run() async throws {
            try await runClient {
                let (r, raw) = try await ConsoleClient(options).get("/api/v1/rollouts/\(id)", as: Rollout.self)
                RolloutCommand.show(r, raw: raw, json: options.json)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List rollouts.")
        @OptionGroup var options: ClientOptions
        func run() async throws {
            try await runClient {
                struct Rollouts: Decodable { var rollouts: [Rollout] }
                let (list, raw) = try await ConsoleClient(options).get("/api/v1/rollouts", as: Rollouts.self)
                if options.json { return printJSON(raw) }
                printTable(ConsoleTables.rollouts(list.rollouts))
            }
        }
    }

    enum Control {
        static func run(_ action: String, _ id: String, _ options: ClientOptions) async throws {
            try await runClient {
                let raw = try await ConsoleClient(options).call("POST", "/api/v1/rollouts/\(id)/\(action)")
                RolloutCommand.show(try FleetJSON.makeDecoder().decode(Rollout.self, from: raw), raw: raw, json: options.json)
            }
        }
        struct Pause: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Pause a rollout (devices in flight finish).")
            @OptionGroup var options: ClientOptions
            @Argument var id: String
            func run() async throws { try await Control.run("pause", id, options) }
        }
        struct Resume: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Resume a paused rollout.")
            @OptionGroup var options: ClientOptions
            @Argument var id: String
            func run() async throws { try await Control.run("resume", id, options) }
        }
        struct Abort: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Abort a rollout (and roll back, unless on_abort: leave).")
            @OptionGroup var options: ClientOptions
            @Argument var id: String
            func run() async throws { try await Control.run("abort", id, options) }
        }
    }
}
