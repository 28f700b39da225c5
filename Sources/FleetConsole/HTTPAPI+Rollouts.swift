import Hummingbird

// Staged configuration rollouts (docs/api.md, "Rollouts").
extension HTTPAPI {
    static func addRolloutRoutes(to api: RouterGroup<APIRequestContext>, core: ConsoleCore) {
        let limit = core.configuration.maxRequestBodyBytes

        api.post("/rollouts", .admin("creating rollouts")) { request, context in
            let buffer = try await body(request, limit: limit)
            let document: RolloutDocument
            switch RolloutDocument.decodeCollecting(Array(buffer.readableBytesView)) {
            case .success(let d): document = d
            case .failure(let error): throw ConsoleError.badRequest(error.reasons.joined(separator: "; "))
            }
            return APIReply(.created, try await core.rollouts.create(document, by: context.principal))
        }

        // What a document would do, without starting it (RolloutPreview; docs/api.md).
        api.post("/rollouts/preview", .admin("previewing rollouts")) { request, context in
            let buffer = try await body(request, limit: limit)
            return APIReply(RolloutPreview(Array(buffer.readableBytesView), rollouts: core.rollouts, for: context.principal))
        }

        api.get("/rollouts", .viewer) { _, context in
            APIReply(["rollouts": try await core.rollouts.list(for: context.principal)])
        }

        api.get("/rollouts/:id", .viewer) { _, context in
            APIReply(try await core.rollouts.rollout(id: context.parameters.get("id") ?? "", for: context.principal))
        }

        for action in ["pause", "resume", "abort"] {
            api.post("/rollouts/:id/\(action)", .admin("\(action) of a rollout")) { _, context in
                APIReply(try await core.rollouts.control(id: context.parameters.get("id") ?? "", action: action, by: context.principal))
            }
        }
    }
}
