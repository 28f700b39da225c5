import Foundation
import HTTPTypes
import Hummingbird

// The dashboard's forms that change something. Each declares the least
// role it needs; DashboardActionCheck refuses the rest, and any form not
// from this console's own page, before the action runs.
extension Dashboard {
    func addActions(to actions: RouterGroup<DashboardRequestContext>) {
        let limit = core.configuration.maxRequestBodyBytes
        let core = self.core

        actions.action("/ui/devices/:site/:device/:action", requires: .operator, formLimit: limit) { _, context -> Response in
            let form = context.form
            let site = context.parameters.get("site") ?? "", device = context.parameters.get("device") ?? ""
            let action = context.parameters.get("action") ?? ""
            let back = "/devices/\(site)/\(device)"
            let submission: CommandSubmission
            switch action {
            case "start": submission = CommandSubmission(action: "start_session", params: .object(["program": .string(form["program"] ?? "")]), targets: .init(devices: ["\(site)/\(device)"]))
            case "stop": submission = CommandSubmission(action: "stop_session", targets: .init(devices: ["\(site)/\(device)"]))
            case "clear-fault": submission = CommandSubmission(action: "clear_fault", targets: .init(devices: ["\(site)/\(device)"]))
            default: return Self.text(.notFound, "unknown action")
            }
            return await self.run(submission, by: context.principal, back: back)
        }

        actions.action("/ui/sites/:site/start", requires: .operator, formLimit: limit) { _, context -> Response in
            let site = context.parameters.get("site") ?? ""
            let submission = CommandSubmission(action: "start_session", params: .object(["program": .string(context.form["program"] ?? "")]), targets: .init(site: site, idleOnly: true))
            return await self.run(submission, by: context.principal, back: "/")
        }

        actions.action("/ui/alerts/:id/ack", requires: .operator, formLimit: limit) { _, context -> Response in
            guard let id = context.parameters.get("id").flatMap(Int64.init) else { return Self.text(.badRequest, "alert id: expected a number") }
            // Refused: the error's status and message, as text (ErrorMiddleware).
            _ = try await core.healthMonitor.acknowledgeAlert(id: id, by: context.principal)
            return Self.redirect("/alerts", cookie: Self.flashCookie("Alert \(id) acknowledged."))
        }

        actions.action("/ui/rollouts/:id/:action", requires: .admin, formLimit: limit) { _, context -> Response in
            let id = context.parameters.get("id") ?? "", action = context.parameters.get("action") ?? ""
            // Back to the rollout's own page, which follows it live.
            let plain = id.count <= 64 && !id.isEmpty && id.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
            let back = plain ? "/rollouts/\(id)" : "/rollouts"
            do throws(ConsoleError) { _ = try await core.rollouts.control(id: id, action: action, by: context.principal) } catch {
                return Self.redirect(back, cookie: Self.flashCookie(error.message))
            }
            return Self.redirect(back, cookie: Self.flashCookie("Rollout \(id): \(action) done."))
        }
    }

    /// Submits a command for the dashboard and redirects back with its outcome.
    func run(_ submission: CommandSubmission, by principal: Principal, back: String) async -> Response {
        do {
            var record = try await core.commands.submit(submission, by: principal)
            // Give the devices a moment to answer so the flash can say how it went.
            let deadline = Date().addingTimeInterval(3)
            while !record.isFinished, Date() < deadline {
                try? await Task.sleep(for: .milliseconds(100))
                record = (try? await core.commands.command(id: record.id, for: principal)) ?? record
            }
            let counts = Dictionary(grouping: record.results, by: \.state.rawValue).map { "\($0.value.count) \($0.key)" }.sorted().joined(separator: ", ")
            let errors = record.results.compactMap(\.error?.message).prefix(2).joined(separator: "; ")
            return Self.redirect(back, cookie: Self.flashCookie("\(submission.action): \(counts)" + (errors.isEmpty ? "" : " — \(errors)")))
        } catch {
            return Self.redirect(back, cookie: Self.flashCookie(error.message))
        }
    }
}
