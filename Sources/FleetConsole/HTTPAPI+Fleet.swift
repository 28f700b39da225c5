import FleetProtocol
import Hummingbird

// The fleet as a token sees it: sites, devices, usage, and the audit log.
extension HTTPAPI {
    static func addFleetRoutes(to api: RouterGroup<APIRequestContext>, core: ConsoleCore) {
        let limit = core.configuration.maxRequestBodyBytes

        api.get("/sites", .viewer) { _, context in
            APIReply(["sites": await core.queries.sites(for: context.principal)])
        }

        // Filtered, sorted and paged on the server (DeviceListQuery; docs/api.md).
        api.get("/devices", .viewer) { request, context in
            let q = try DeviceListQuery { query(request, $0) }
            return APIReply(DeviceListReply(try core.queries.deviceList(for: context.principal, query: q)))
        }

        api.get("/devices/:site/:device", Access.viewer.seeing(site: "site")) { _, context in
            APIReply(try await core.queries.device(site: context.parameters.get("site") ?? "", device: context.parameters.get("device") ?? "", for: context.principal))
        }

        // Forget a device (issue 20, items 10 and 18; docs/api.md). The body is optional.
        api.post("/devices/:site/:device/forget", Access.admin("forgetting a device").actingOn(site: "site")) { request, context in
            let buffer = try await body(request, limit: limit)
            var reason: String?
            if buffer.readableBytes > 0 {
                switch FleetJSON.decode(ForgetRequest.self, from: Array(buffer.readableBytesView)) {
                case .success(let body): reason = body.reason
                case .failure(let error): throw ConsoleError.badRequest("expected no body or {\"reason\": \"…\"}: \(error.message)")
                }
            }
            return APIReply(try await core.persistence.forget(site: context.parameters.get("site") ?? "", device: context.parameters.get("device") ?? "", reason: reason, by: context.principal))
        }

        api.get("/usage", .viewer) { request, context in
            APIReply(try core.queries.usage(for: context.principal, site: query(request, "site"), from: query(request, "from"), to: query(request, "to")))
        }

        api.get("/audit", Access.admin("the audit log").everySite()) { request, context in
            var limit = 200
            if let l = query(request, "limit") {
                guard let n = Int(l), (1...10_000).contains(n) else { throw ConsoleError.badRequest("limit: expected an integer from 1 to 10000, got \"\(l)\"") }
                limit = n
            }
            return APIReply(["entries": try await core.audit.entries(for: context.principal, limit: limit)])
        }
    }
}
