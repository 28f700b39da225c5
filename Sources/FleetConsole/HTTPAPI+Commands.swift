import Hummingbird

// Commands to devices, and the alerts operators acknowledge.
extension HTTPAPI {
    static func addCommandRoutes(to api: RouterGroup<APIRequestContext>, core: ConsoleCore) {
        let limit = core.configuration.maxRequestBodyBytes

        api.post("/commands", .operator("sending commands")) { request, context in
            let submission = try await decodeBody(request, as: CommandSubmission.self, limit: limit)
            return APIReply(.accepted, try await core.commands.submit(submission, by: context.principal))
        }

        api.get("/commands/:id", .viewer) { _, context in
            APIReply(try await core.commands.command(id: context.parameters.get("id") ?? "", for: context.principal))
        }

        api.get("/alerts", .viewer) { request, context in
            var active = true
            if let a = query(request, "active") {
                guard a == "true" || a == "false" else { throw ConsoleError.badRequest("active: expected true or false, got \"\(a)\"") }
                active = a == "true"
            }
            return APIReply(["alerts": try await core.healthMonitor.alerts(for: context.principal, activeOnly: active)])
        }

        api.post("/alerts/:id/ack", .operator("acknowledging alerts")) { _, context in
            guard let id = context.parameters.get("id").flatMap(Int64.init) else { throw ConsoleError.badRequest("id: expected an alert number") }
            return APIReply(try await core.healthMonitor.acknowledgeAlert(id: id, by: context.principal))
        }
    }
}
