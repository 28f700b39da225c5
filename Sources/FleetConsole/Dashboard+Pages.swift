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
            let sites = await core.queries.sites(for: s.principal).map { site -> [String: Any] in
                var d = (try? JSONValue(encoding: site)).map(Self.plain) as? [String: Any] ?? [:]
                d["utilisationText"] = "\(Int((site.utilisation * 100).rounded()))%"
                d["programs"] = programs[site.site] ?? []
                d["canOperate"] = s.principal.role >= .operator
                d["csrf"] = s.csrf
                return d
            }
            return self.page("overview", title: "Overview", session: s, flash: Self.cookieFlash(request), ["sites": sites])
        }

        pages.get("/devices") { _, context -> Response in
            let s = context.signedIn
            let devices = ((try? core.queries.devices(for: s.principal)) ?? []).map { d -> [String: Any] in
                ["site": d.site, "device": d.device, "state": d.state.rawValue, "health": d.health.rawValue,
                 "program": d.session?.program ?? "", "config": "\(d.config.reported.map(String.init) ?? "–") / \(d.config.desired.map(String.init) ?? "–")"]
            }
            let siteIDs = await core.queries.sites(for: s.principal).map(\.site)
            return self.page("devices", title: "Devices", session: s, ["devices": devices, "siteIDs": siteIDs])
        }

        pages.get("/devices/:site/:device") { request, context -> Response in
            let s = context.signedIn
            let site = context.parameters.get("site") ?? "", device = context.parameters.get("device") ?? ""
            // Refused (403, 404, …): the error's status and message, as text (ErrorMiddleware).
            let detail = try await core.queries.device(site: site, device: device, for: s.principal)
            let sum = detail.summary
            var ctx: [String: Any] = [
                "site": site, "device": device, "state": sum.state.rawValue, "health": sum.health.rawValue,
                "agentVersion": sum.agentVersion ?? "?", "epoch": sum.epoch.map(String.init) ?? "?", "programs": detail.programs,
                "live": Self.live(detail.telemetry, at: detail.telemetryAt),
                "sessions": detail.recentSessions.map { ["session_id": $0.sessionID, "program": $0.program ?? "", "started": Self.when($0.startedAt), "outcome": $0.outcome, "reason": $0.reason ?? ""] },
                "alerts": detail.alerts.map { a -> [String: Any] in ["type": a.type, "severity": a.severity.rawValue, "message": a.message, "raised": Self.when(a.raisedAt), "cleared": a.clearedAt.map(Self.when) ?? false] },
                "desired": detail.desiredConfig.map { "version \($0.version): " + Self.json($0.config) } ?? "none",
                "reported": detail.reportedConfig.map { "version \($0.version) \($0.state.rawValue)" + ($0.error.map { ": \($0)" } ?? "") } ?? "none",
            ]
            ctx["csrf"] = s.csrf
            return self.page("device", title: "\(site)/\(device)", session: s, flash: Self.cookieFlash(request), ctx)
        }

        pages.get("/alerts") { request, context -> Response in
            let s = context.signedIn
            let alerts = ((try? await core.healthMonitor.alerts(for: s.principal, activeOnly: true)) ?? []).map { a -> [String: Any] in
                ["id": "\(a.id)", "severity": a.severity.rawValue, "site": a.site, "device": a.device ?? "all", "type": a.type, "message": a.message,
                 "raised": Self.when(a.raisedAt), "acknowledged": a.acknowledgedBy.map { "\($0), \(Self.when(a.acknowledgedAt))" } ?? "",
                 "canAck": s.principal.role >= .operator && a.acknowledgedBy == nil, "csrf": s.csrf]
            }
            return self.page("alerts", title: "Alerts", session: s, flash: Self.cookieFlash(request), ["alerts": alerts])
        }

        pages.get("/usage") { _, context -> Response in
            let s = context.signedIn
            let report = (try? core.queries.usage(for: s.principal)) ?? UsageReport(days: [], totals: [:])
            let sites = report.totals.keys.sorted().map { site -> [String: Any] in
                let total = report.totals[site]!
                func minutes(_ seconds: [String: UInt64]) -> [(String, Double)] { seconds.map { ($0.key, Double($0.value) / 60) }.sorted { $0.1 > $1.1 } }
                let charts = [
                    UsageCharts.bars(title: "Minutes by zone", minutes(total.seconds.byZone)),
                    UsageCharts.bars(title: "Minutes by point", minutes(total.seconds.byPoint)),
                    UsageCharts.bars(title: "Minutes by program", minutes(total.seconds.byProgram)),
                    UsageCharts.bars(title: "Sessions by outcome", [("completed", Double(total.sessions.completed))] + total.sessions.aborted.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { ("aborted: \($0.key)", Double($0.value)) }),
                    UsageCharts.days(title: "Session minutes per day", report.days.filter { $0.site == site }.map { ($0.day, $0.minutes["program"]?.values.reduce(0, +) ?? 0) }),
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
            return self.page("rollouts", title: "Rollouts", session: s, flash: Self.cookieFlash(request), ["rollouts": list])
        }
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
