import FleetProtocol
import Foundation
import HTTPTypes
import Hummingbird

// The dashboard's live updates (Server-Sent Events), for a signed-in
// session (DashboardStreamContext: without one, 401).
extension Dashboard {
    func addLiveUpdates(to events: RouterGroup<DashboardStreamContext>) {
        let core = self.core

        events.get("/events/devices/:site/:device") { _, context -> Response in
            let id = context.signedIn.id, s = context.signedIn
            let site = context.parameters.get("site") ?? "", device = context.parameters.get("device") ?? ""
            guard (try? await core.queries.device(site: site, device: device, for: s.principal)) != nil else { return Self.text(.notFound, "no such device") }
            return self.stream(session: id) { principal in
                // The device's site may have left the token's list: the stream ends.
                guard let d = try? await core.queries.device(site: site, device: device, for: principal) else { return nil }
                var snapshot: [String: Any] = Self.live(d.telemetry, at: d.telemetryAt, zone: core.configuration.timeZone(ofSite: site))
                snapshot.merge(Self.picture(core, site: site, device: device, telemetry: d.telemetry)) { $1 }
                return Self.json(snapshot)
            }
        }
        events.get("/events/overview") { _, context -> Response in
            let id = context.signedIn.id
            return self.stream(session: id) { principal in
                let floor = DashboardFloor.floor(core, for: principal)
                let sites = await core.queries.sites(for: principal).map { site -> [String: Any] in
                    ["site": site.site, "tiles": floor[site.site]?.tiles.map(\.plain) ?? [], "more": floor[site.site]?.more ?? 0, "counts": ["devices": site.devices, "online": site.online, "in_session": site.inSession, "idle": site.idle,
                                                   "offline": site.offline, "faulted": site.faulted, "alerts": site.activeAlerts,
                                                   "sessions_today": site.sessionsToday, "utilisation": "\(Int((site.utilisation * 100).rounded()))%"] as [String: Any]]
                }
                return Self.json(sites)
            }
        }
    }

    /// Server-Sent Events for session `id`: the value of `snapshot` (given
    /// the session's principal as its token says now) whenever it changes,
    /// checked every second, for at most 10 minutes (the browser reconnects).
    ///
    /// Every second the session is checked again: once it is signed out,
    /// expired or its token removed, the stream sends `event: signed_out` and
    /// ends (so does it when `snapshot` says nil: nothing left to show). A
    /// second with nothing new sends an SSE comment, so a client that went
    /// away is noticed (the write fails) and its slot freed within seconds.
    /// A session holds at most `dashboard.max_streams_per_session` streams;
    /// one more is refused with 429 `too_many_streams` (EventSource does not
    /// retry a refused stream, where closing the oldest would have the
    /// browser reopen it and evict another, over and over).
    func stream(session id: String, _ snapshot: @escaping @Sendable (Principal) async -> String?) -> Response {
        guard let slot = streams.acquire(session: id) else {
            let limit = streams.limitPerSession
            let body = Self.json([
                "error": ["code": "too_many_streams",
                          "message": "this session already has \(limit) live-update streams open (dashboard.max_streams_per_session: \(limit)); close a dashboard tab, or wait for one to end, then reload"],
            ] as [String: Any])
            var headers = HTTPFields()
            headers[.contentType] = "application/json; charset=utf-8"
            Self.securityHeaders(&headers)
            return Response(status: .tooManyRequests, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: ResponseBody { [self] writer in
            defer { slot.release() }
            var last: String?
            let end = ContinuousClock.now + .seconds(600)
            while ContinuousClock.now < end, !Task.isCancelled {
                guard let session = self.sessions.session(id: id) else {
                    try await writer.write(ByteBuffer(string: "event: signed_out\ndata: {}\n\n"))
                    break
                }
                guard let now = await snapshot(session.principal) else { break }
                if now != last {
                    try await writer.write(ByteBuffer(string: "data: \(now)\n\n"))
                    last = now
                } else {
                    try await writer.write(ByteBuffer(string: ":\n\n"))
                }
                try await Task.sleep(for: .seconds(1))
            }
            try await writer.finish(nil)
        })
    }
}
