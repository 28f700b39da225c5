import FleetProtocol
import Foundation
import HTTPTypes
import Hummingbird

// The dashboard's pages, for a signed-in session (DashboardRequestContext:
// without one, the sign-in page).
extension Dashboard {
    func addPages(to pages: RouterGroup<DashboardRequestContext>) {
        let core = self.core

        pages.get("/") { request, context -> Response in
            let s = context.signedIn
            // Each site's start form offers the programs its own devices run
            // (never another site's: issue 20, item 6).
            let programs = core.queries.programsBySite(for: s.principal)
            let floor = DashboardFloor.floor(core, for: s.principal)
            let sites = await core.queries.sites(for: s.principal).map { site -> [String: Any] in
                var d = (try? JSONValue(encoding: site)).map(Self.plain) as? [String: Any] ?? [:]
                d["utilisationText"] = "\(Int((site.utilisation * 100).rounded()))%"
                d["tiles"] = floor[site.site]?.tiles.map(\.plain) ?? []
                d["more"] = (floor[site.site]?.more ?? 0) > 0 ? (floor[site.site]?.more ?? 0) as Any : false as Any
                d["programs"] = programs[site.site] ?? []
                d["canOperate"] = s.principal.role >= .operator
                d["csrf"] = s.csrf
                return d
            }
            return self.page("overview", title: "Overview", session: s, flash: Self.cookieFlash(request), ["sites": sites])
        }

        // Filtered, sorted and paged on the server (DeviceListQuery): the
        // filter form and the column buttons are a GET of this page.
        pages.get("/devices") { request, context -> Response in
            let s = context.signedIn
            let siteIDs = core.queries.siteIDs(for: s.principal)
            let parameters = request.uri.queryParameters
            let query: DeviceListQuery
            do throws(ConsoleError) { query = try DeviceListQuery({ name in
                // A column button sends `sort`; the filter form keeps the current one as `current_sort`.
                name == "sort" ? (parameters.get("sort") ?? parameters.get("current_sort")) : parameters.get(name)
            }, defaultLimit: Self.devicesPerPage) } catch {
                return self.page("devices", title: "Devices", session: s, status: .badRequest, flash: error.message,
                                 Self.devicesContext(siteIDs: siteIDs, query: nil, page: nil, zones: core.configuration))
            }
            let page = (try? core.queries.deviceList(for: s.principal, query: query)) ?? query.page(of: [DeviceSummary]())
            return self.page("devices", title: "Devices", session: s,
                             Self.devicesContext(siteIDs: siteIDs, query: query, page: page, zones: core.configuration))
        }

        pages.get("/devices/:site/:device") { request, context -> Response in
            let s = context.signedIn
            let site = context.parameters.get("site") ?? "", device = context.parameters.get("device") ?? ""
            // Refused (403, 404, …): the error's status and message, as text (ErrorMiddleware).
            let detail = try await core.queries.device(site: site, device: device, for: s.principal)
            let sum = detail.summary
            let zone = core.configuration.timeZone(ofSite: site)
            var ctx: [String: Any] = [
                "site": site, "device": device, "state": sum.state.rawValue, "health": sum.health.rawValue,
                "agentVersion": sum.agentVersion ?? "?", "epoch": sum.epoch.map(String.init) ?? "?", "programs": detail.programs,
                "live": Self.live(detail.telemetry, at: detail.telemetryAt, zone: zone), "timezone": zone.identifier,
                "sessions": detail.recentSessions.map { ["session_id": $0.sessionID, "program": $0.program ?? "", "started": Self.when($0.startedAt, zone: zone), "outcome": $0.outcome, "reason": $0.reason ?? ""] },
                "alerts": detail.alerts.map { a -> [String: Any] in ["type": a.type, "severity": a.severity.rawValue, "message": a.message, "raised": Self.when(a.raisedAt, zone: zone), "cleared": a.clearedAt.map { Self.when($0, zone: zone) } ?? false] },
                "desired": detail.desiredConfig.map { "version \($0.version): " + Self.json($0.config) } ?? "none",
                "reported": detail.reportedConfig.map { "version \($0.version) \($0.state.rawValue)" + ($0.error.map { ": \($0)" } ?? "") } ?? "none",
            ]
            ctx.merge(Self.picture(core, site: site, device: device, telemetry: detail.telemetry)) { $1 }
            // Recent faults and aborts: the device's fault alerts and its aborted sessions.
            var troubles: [(at: Date?, what: String)] = []
            for x in detail.recentSessions where x.outcome == "aborted" {
                troubles.append((x.startedAt, "session \(x.sessionID) aborted: \(x.reason ?? "no reason given")" + (x.program.map { " (\($0))" } ?? "")))
            }
            for a in detail.alerts where ["fault", "overheat"].contains(a.type) {
                troubles.append((a.raisedAt, "\(a.type): \(a.message)" + (a.clearedAt == nil ? "" : " (cleared)")))
            }
            troubles.sort { ($0.at ?? .distantPast) > ($1.at ?? .distantPast) }
            ctx["troubles"] = troubles.prefix(10).map { ["when": Self.when($0.at, zone: zone), "what": $0.what] }
            ctx["csrf"] = s.csrf
            return self.page("device", title: "\(site)/\(device)", session: s, flash: Self.cookieFlash(request), ctx)
        }

        pages.get("/alerts") { request, context -> Response in
            let s = context.signedIn
            let alerts = ((try? await core.healthMonitor.alerts(for: s.principal, activeOnly: true)) ?? []).map { a -> [String: Any] in
                let zone = core.configuration.timeZone(ofSite: a.site)
                return ["id": "\(a.id)", "severity": a.severity.rawValue, "site": a.site, "device": a.device ?? "all", "type": a.type, "message": a.message,
                 "raised": Self.when(a.raisedAt, zone: zone), "acknowledged": a.acknowledgedBy.map { "\($0), \(Self.when(a.acknowledgedAt, zone: zone))" } ?? "",
                 "canAck": s.principal.role >= .operator && a.acknowledgedBy == nil, "csrf": s.csrf]
            }
            return self.page("alerts", title: "Alerts", session: s, flash: Self.cookieFlash(request), ["alerts": alerts])
        }

        pages.get("/usage") { _, context -> Response in
            let s = context.signedIn
            let report = (try? core.queries.usage(for: s.principal)) ?? UsageReport(days: [], totals: [:])
            let sites = report.totals.keys.sorted().map { site -> [String: Any] in
                let total = report.totals[site]!
                func seconds(_ seconds: [String: UInt64]) -> [(String, Double)] { seconds.map { ($0.key, Double($0.value)) }.sorted { $0.1 > $1.1 } }
                // Durations read as m:ss, counts as integers (issue 24, item 4).
                let charts = [
                    UsageCharts.bars(title: "Time by zone (m:ss)", seconds(total.seconds.byZone), format: DashboardFormat.duration),
                    UsageCharts.bars(title: "Time by point (m:ss)", seconds(total.seconds.byPoint), format: DashboardFormat.duration),
                    UsageCharts.bars(title: "Time by program (m:ss)", seconds(total.seconds.byProgram), format: DashboardFormat.duration),
                    UsageCharts.bars(title: "Sessions by outcome", [("completed", Double(total.sessions.completed))] + total.sessions.aborted.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { ("aborted: \($0.key)", Double($0.value)) }, format: DashboardFormat.count),
                    UsageCharts.days(title: "Session time per day (m:ss)", report.days.filter { $0.site == site }.map { ($0.day, ($0.minutes["program"]?.values.reduce(0, +) ?? 0) * 60) }, format: DashboardFormat.duration),
                ].joined()
                return ["site": site, "started": "\(total.sessions.started)", "completed": "\(total.sessions.completed)", "aborted": "\(total.sessions.abortedTotal)", "charts": charts]
            }
            return self.page("usage", title: "Usage", session: s, ["sites": sites])
        }

        pages.get("/rollouts") { request, context -> Response in
            let s = context.signedIn
            let list = ((try? await core.rollouts.list(for: s.principal)) ?? []).map { r -> [String: Any] in
                ["id": r.id, "name": r.name, "state": r.state.rawValue, "reason": r.reason ?? false,
                 "waves": r.waves.map { "\($0.index): \($0.size) \($0.state)" }.joined(separator: ", "),
                 "counts": r.counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "),
                 "devices": r.devices.map { ["wave": "\($0.wave)", "site": $0.site, "device": $0.device, "state": $0.state.rawValue, "version": $0.version.map(String.init) ?? "", "error": $0.error ?? ""] },
                 "canAdmin": s.principal.role >= .admin && !r.partial, "partial": r.partial, "csrf": s.csrf]
            }
            return self.page("rollouts", title: "Rollouts", session: s, flash: Self.cookieFlash(request), ["rollouts": list, "canStart": s.principal.role >= .admin])
        }
    }

    static let devicesPerPage = 50

    /// The device's live session picture (DashboardSessionPicture): the
    /// pressure chart as SVG and the steps so far.
    static func picture(_ core: ConsoleCore, site: String, device: String, telemetry: Telemetry?) -> [String: Any] {
        let history = (try? DeviceAddress(site: site, device: device)).flatMap { core.ingest.telemetryHistory.history($0) }
        let running = telemetry?.sessionState == .running || telemetry?.sessionState == .paused
        return ["chart": DashboardSessionPicture.chart(history), "steps": DashboardSessionPicture.steps(history, running: running)]
    }

    /// The devices page's context: the filter form as `query` says, the page's
    /// rows, the column buttons (a second click on the sorted column reverses
    /// it) and the links to the previous and next pages.
    static func devicesContext(siteIDs: [String], query: DeviceListQuery?, page: DeviceListQuery.Page<DeviceSummary>?, zones: ConsoleConfiguration) -> [String: Any] {
        var ctx: [String: Any] = [:]
        let q = query
        ctx["siteIDs"] = siteIDs.map { ["id": $0, "selected": $0 == q?.site] as [String: Any] }
        ctx["states"] = DeviceState.allCases.map { ["id": $0.rawValue, "selected": $0 == q?.state] as [String: Any] }
        ctx["text"] = q?.text ?? ""
        ctx["sort"] = q?.sortParameter ?? "site"
        ctx["columns"] = ["site", "device", "state", "health", "program", "last_seen"].map { column -> [String: Any] in
            let current = q?.sort.rawValue == column
            let next = current && q?.descending == false ? "-" + column : column
            let label = ["site": "Site", "device": "Device", "state": "State", "health": "Health", "program": "Program", "last_seen": "Last seen"][column]!
            return ["column": column, "label": label, "next": next,
                    "ariaSort": current ? (q?.descending == true ? "descending" : "ascending") : "none"]
        }
        guard let q, let page else { ctx["devices"] = [Any](); return ctx }
        ctx["devices"] = page.devices.map { d -> [String: Any] in
            ["site": d.site, "device": d.device, "state": d.state.rawValue, "health": d.health.rawValue,
             "program": d.session?.program ?? "", "lastSeen": when(d.lastSeen, zone: zones.timeZone(ofSite: d.site)),
             "config": "\(d.config.reported.map(String.init) ?? "–") / \(d.config.desired.map(String.init) ?? "–")"]
        }
        func link(offset: Int) -> String {
            var items = [URLQueryItem]()
            if let site = q.site { items.append(.init(name: "site", value: site)) }
            if let state = q.state { items.append(.init(name: "state", value: state.rawValue)) }
            if let health = q.health { items.append(.init(name: "health", value: health.rawValue)) }
            if let text = q.text { items.append(.init(name: "q", value: text)) }
            items.append(.init(name: "sort", value: q.sortParameter))
            if let limit = q.limit, limit != devicesPerPage { items.append(.init(name: "limit", value: String(limit))) }
            items.append(.init(name: "offset", value: String(offset)))
            var c = URLComponents(); c.path = "/devices"; c.queryItems = items
            return c.string ?? "/devices"
        }
        let limit = page.limit ?? max(page.total, 1)
        let first = page.devices.isEmpty ? 0 : min(page.offset, page.total) + 1
        ctx["range"] = page.total == 0 ? "No devices match." : "Devices \(first)–\(min(page.offset, page.total) + page.devices.count) of \(page.total)"
        ctx["prev"] = page.offset > 0 ? link(offset: max(0, page.offset - limit)) : false
        ctx["next"] = page.nextOffset.map(link) ?? false
        ctx["limit"] = q.limit.flatMap { $0 == devicesPerPage ? nil : String($0) } ?? false as Any
        return ctx
    }

    /// A one-shot message for the next page (a cookie, cleared when shown).
    static func flashCookie(_ text: String) -> String {
        let encoded = Data(text.prefix(300).utf8).base64EncodedString().replacingOccurrences(of: "=", with: "")
        return "fc_flash=\(encoded); Path=/; HttpOnly; SameSite=Strict; Max-Age=30"
    }

    static func cookieFlash(_ request: Request) -> String? {
        guard var v = DashboardSessions.cookieValue(request, "fc_flash"), !v.isEmpty else { return nil }
        while v.count % 4 != 0 { v += "=" }
        return Data(base64Encoded: v).flatMap { String(data: $0, encoding: .utf8) }
    }
}
