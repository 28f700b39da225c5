import Foundation
import HTTPTypes
import Hummingbird

// What the dashboard serves without a session: its static files, and
// signing in and out.
extension Dashboard {
    func addOpenRoutes(to router: Router<ConsoleRequestContext>) {
        let limit = core.configuration.maxRequestBodyBytes
        let core = self.core, sessions = self.sessions

        router.get("/static/app.css") { _, _ -> Response in
            var h = HTTPFields(); h[.contentType] = "text/css; charset=utf-8"; h[.cacheControl] = "max-age=300"
            return Response(status: .ok, headers: h, body: ResponseBody(byteBuffer: ByteBuffer(string: DashboardTemplates.css)))
        }
        router.get("/static/app.js") { _, _ -> Response in
            var h = HTTPFields(); h[.contentType] = "text/javascript; charset=utf-8"; h[.cacheControl] = "max-age=300"
            return Response(status: .ok, headers: h, body: ResponseBody(byteBuffer: ByteBuffer(string: DashboardTemplates.js)))
        }

        // The icon: linked from every page, and at /favicon.ico, which
        // browsers ask for on their own (it answered 404 on every page).
        for path in ["/static/icon.svg", "/favicon.ico"] {
            router.get(RouterPath(path)) { _, _ -> Response in
                var h = HTTPFields(); h[.contentType] = "image/svg+xml"; h[.cacheControl] = "max-age=86400"
                return Response(status: .ok, headers: h, body: ResponseBody(byteBuffer: ByteBuffer(string: DashboardTemplates.icon)))
            }
        }

        router.get("/login") { _, context in
            context.session != nil ? Self.redirect("/") : self.page("login", title: "Sign in", session: nil, [:])
        }
        // Trades an API token for a session.
        router.post("/login") { request, _ -> Response in
            let form = await Self.form(request, limit: limit)
            let token = (form["token"] ?? "").trimmingCharacters(in: .whitespaces)
            guard let principal = try? core.access.authenticate(authorization: "Bearer " + token) else {
                return self.page("login", title: "Sign in", session: nil, status: .unauthorized, ["error": "That token is not valid."])
            }
            let id = sessions.start(principal, token: token)
            await core.audit.record(principal, "dashboard.sign_in", targets: "-", outcome: "ok")
            let secure = DashboardSessions.isSecure(request, core.configuration.secureCookies)
            return Self.redirect("/", cookie: DashboardSessions.sessionCookie(id, secure: secure, maxAge: Int(DashboardSessions.lifetime)))
        }
        // Always back to the sign-in page without a cookie; the session ends
        // when the form came from its own page.
        router.post("/logout") { request, context -> Response in
            let form = await Self.form(request, limit: limit)
            if let signedIn = context.session, (try? DashboardActionCheck.check(request, form: form, signedIn: signedIn, role: .viewer)) != nil {
                sessions.end(id: signedIn.id)
            }
            return Self.redirect("/login", cookie: DashboardSessions.sessionCookie("", secure: DashboardSessions.isSecure(request, core.configuration.secureCookies), maxAge: 0))
        }
    }
}
