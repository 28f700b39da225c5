import FleetProtocol
import Foundation
import HTTPTypes
import Hummingbird

// Rollouts from the browser (issue 24, item 1): the form an admin starts
// one with (checked by the API's own checks, every reason shown with its
// key before anything is sent), and a live page per rollout with its
// waves, devices, counts, threshold and pause / resume / abort.
extension Dashboard {
    func addRolloutPages(pages: RouterGroup<DashboardRequestContext>, actions: RouterGroup<DashboardRequestContext>, events: RouterGroup<DashboardStreamContext>) {
        let core = self.core
        let limit = core.configuration.maxRequestBodyBytes

        pages.get("/rollouts/new") { _, context -> Response in
            let s = context.signedIn
            guard s.principal.role >= .admin else { return Self.text(.forbidden, "starting a rollout needs the admin role; \(s.principal.name) is \(s.principal.role.rawValue)") }
            let defaults = ["canary": "1", "percentages": "50, 100", "bake_s": "60", "on_abort": "rollback", "wave_mode": "percentages", "threshold_action": "pause"]
            return self.page("rolloutNew", title: "New rollout", session: s, await self.rolloutFormContext(DashboardRolloutForm(fields: defaults), check: nil, for: s))
        }

        // "Check" shows the devices, the waves and every reason, and sends
        // nothing; "Start rollout" checks again and starts it only when no
        // reason is left.
        actions.action("/ui/rollouts/new", requires: .admin, formLimit: limit) { _, context -> Response in
            let s = context.signedIn
            let form = DashboardRolloutForm(fields: context.form)
            let check = form.check(core, for: s.principal)
            guard context.form["intent"] == "start", let document = check.document else {
                return self.page("rolloutNew", title: "New rollout", session: s, status: check.reasons.isEmpty ? .ok : .badRequest,
                                 await self.rolloutFormContext(form, check: check, for: s))
            }
            do throws(ConsoleError) {
                let rollout = try await core.rollouts.create(document, by: s.principal)
                return Self.redirect("/rollouts/\(rollout.id)", cookie: Self.flashCookie("Rollout \(rollout.id) started: \(rollout.waves.map { "\($0.size)" }.joined(separator: " + ")) devices."))
            } catch {
                var refused = check
                refused.reasons = [error.message]
                return self.page("rolloutNew", title: "New rollout", session: s, status: .badRequest, await self.rolloutFormContext(form, check: refused, for: s))
            }
        }

        // The form's live preview as it is filled in: the same check, as
        // JSON (RolloutPreview), and nothing sent.
        actions.action("/ui/rollouts/preview", requires: .admin, formLimit: limit) { _, context -> Response in
            let preview = DashboardRolloutForm(fields: context.form).check(core, for: context.signedIn.principal)
            var headers = HTTPFields()
            headers[.contentType] = "application/json; charset=utf-8"
            Self.securityHeaders(&headers)
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: Self.json(preview))))
        }

        pages.get("/rollouts/:id") { request, context -> Response in
            let s = context.signedIn
            let id = context.parameters.get("id") ?? ""
            // Refused (404 for another site's rollout): the error's status and message (ErrorMiddleware).
            let rollout = try await core.rollouts.rollout(id: id, for: s.principal)
            var ctx = Self.rolloutView(rollout)
            ctx["canAdmin"] = s.principal.role >= .admin && !rollout.partial
            return self.page("rollout", title: "Rollout \(rollout.name)", session: s, flash: Self.cookieFlash(request), ctx)
        }

        events.get("/events/rollouts/:id") { _, context -> Response in
            let id = context.parameters.get("id") ?? "", s = context.signedIn
            guard (try? await core.rollouts.rollout(id: id, for: s.principal)) != nil else { return Self.text(.notFound, "no such rollout") }
            return self.stream(session: s.id) { principal in
                guard let r = try? await core.rollouts.rollout(id: id, for: principal) else { return nil }
                return Self.json(Self.rolloutView(r))
            }
        }
    }

    func rolloutFormContext(_ form: DashboardRolloutForm, check: RolloutPreview?, for s: DashboardSessions.SignedIn) async -> [String: Any] {
        let f = form.fields
        var ctx: [String: Any] = [:]
        for key in ["name", "devices", "canary", "percentages", "factor", "bake_s", "apply_timeout_s", "threshold_percent", "threshold_min", "window_start", "window_end", "config"] {
            ctx[key] = f[key] ?? ""
        }
        ctx["factorMode"] = f["wave_mode"] == "factor"
        ctx["percentMode"] = f["wave_mode"] != "factor"
        ctx["thresholdAbort"] = f["threshold_action"] == "abort"
        ctx["onAbortLeave"] = f["on_abort"] == "leave"
        ctx["canAll"] = s.principal.sites == nil
        ctx["all"] = f["all"] == "on"
        ctx["sites"] = await core.queries.sites(for: s.principal).map { ["id": $0.site, "checked": f["site.\($0.site)"] == "on", "timezone": $0.timezone] as [String: Any] }
        ctx["days"] = DashboardRolloutForm.days.map { ["id": $0, "checked": f["day.\($0)"] == "on"] as [String: Any] }
        if let check {
            ctx["checked"] = true
            ctx["reasons"] = check.reasons.map { r -> [String: String] in
                let key = RolloutPreview.key(of: r)
                return ["key": key, "text": String(r.dropFirst(min(r.count, key.count)))]
            }
            ctx["ok"] = check.reasons.isEmpty
            ctx["targets"] = "\(check.targets)"
            ctx["waves"] = check.waves.enumerated().map { ["index": "\($0.offset + 1)", "size": "\($0.element)"] }
        }
        return ctx
    }

    /// A rollout as its page shows it (and its live stream sends it).
    static func rolloutView(_ r: Rollout) -> [String: Any] {
        let failed = r.devices.filter(\.state.isFailure).count, executed = r.devices.filter(\.state.isExecuted).count
        var threshold = "none set"
        if let t = r.document.errorThreshold {
            let percent = executed == 0 ? 0 : Int((Double(failed) * 100 / Double(executed)).rounded())
            threshold = "\(failed) failed of \(executed) done (\(percent)%); \(t.action)s above \(DashboardFormat.count(t.percent))% once \(t.minExecuted) are done"
        }
        return [
            "id": r.id, "name": r.name, "state": r.state.rawValue, "reason": r.reason ?? "", "createdBy": r.createdBy,
            "partial": r.partial, "threshold": threshold,
            "counts": r.counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "),
            "waves": r.waves.map { ["index": "\($0.index + 1)", "size": "\($0.size)", "state": $0.state, "current": $0.index == r.currentWave && r.state.isActive] as [String: Any] },
            "devices": r.devices.map { ["wave": "\($0.wave + 1)", "site": $0.site, "device": $0.device, "state": $0.state.rawValue, "version": $0.version.map(String.init) ?? "", "error": $0.error ?? ""] },
        ]
    }
}
