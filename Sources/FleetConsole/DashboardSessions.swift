import Foundation
import HTTPTypes
import Hummingbird
import Synchronization

/// The dashboard's sign-in sessions: an API token traded at /login for an
/// HttpOnly, SameSite=Strict session cookie naming one of them. A session
/// lasts `lifetime`, until it is signed out, or until its token is no
/// longer in force, whichever comes first; `Authenticator` looks up the one
/// a request names.
final class DashboardSessions: Sendable {
    struct Session: Sendable {
        var principal: Principal
        var csrf: String
        var expires: Date
        /// The SHA-256 of the token signed in with: the session lasts only
        /// while that token is in force.
        var tokenDigest: [UInt8]
    }

    /// A request's signed-in session: the cookie's id, and the session with
    /// the principal its token gives now.
    struct SignedIn: Sendable {
        var id: String
        var session: Session
        var principal: Principal { session.principal }
        var csrf: String { session.csrf }
    }

    static let cookie = "fc_session"
    static let lifetime: TimeInterval = 8 * 3600

    let core: ConsoleCore
    private let all = Mutex<[String: Session]>([:])

    init(core: ConsoleCore) {
        self.core = core
    }

    /// A new session for `principal`, signed in with `token`; its id.
    func start(_ principal: Principal, token: String) -> String {
        let id = Self.randomToken()
        let session = Session(principal: principal, csrf: Self.randomToken(), expires: Date().addingTimeInterval(Self.lifetime), tokenDigest: TokenEntry.hash(token))
        all.withLock { $0[id] = session }
        return id
    }

    func end(id: String) {
        _ = all.withLock { $0.removeValue(forKey: id) }
    }

    /// The signed-in session `request`'s cookie names, if any.
    func signedIn(_ request: Request) -> SignedIn? {
        guard let id = sessionID(request), let session = session(id: id) else { return nil }
        return SignedIn(id: id, session: session)
    }

    func sessionID(_ request: Request) -> String? {
        Self.cookieValue(request, Self.sessionCookieName(secure: Self.isSecure(request, core.configuration.secureCookies)))
    }

    /// Session `id` while it is signed in: not signed out, not expired, and
    /// its token still in force, with the principal that token gives now.
    /// A session whose token was removed ends here. Every page and every
    /// live update asks.
    func session(id: String) -> Session? {
        let found = all.withLock { all -> Session? in
            guard let s = all[id] else { return nil }
            if s.expires < Date() { all[id] = nil; return nil }
            return s
        }
        guard var s = found else { return nil }
        guard let principal = core.access.principal(tokenDigest: s.tokenDigest) else {
            end(id: id)
            return nil
        }
        s.principal = principal
        return s
    }

    // MARK: Cookies

    static func randomToken() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
    }

    /// Whether `request` reached the browser over TLS, as far as the console
    /// may know (`secure_cookies`): always, never, or when a proxy said so
    /// with `X-Forwarded-Proto: https` — a header trusted only when
    /// configured, since anyone can send it to a console reached directly.
    static func isSecure(_ request: Request, _ mode: CookieSecurity) -> Bool {
        switch mode {
        case .off: return false
        case .always: return true
        case .forwardedProto:
            guard let name = HTTPField.Name("X-Forwarded-Proto"), let value = request.headers[name] else { return false }
            // A chain of proxies appends: the first value is what the browser used.
            return value.split(separator: ",").first?.trimmingCharacters(in: .whitespaces).lowercased() == "https"
        }
    }

    /// The session cookie's name: `__Host-fc_session` over TLS (the browser
    /// then insists on Secure, Path=/ and no Domain), else `fc_session`.
    static func sessionCookieName(secure: Bool) -> String { secure ? "__Host-" + cookie : cookie }

    /// `Set-Cookie` for the session `id` (empty and `Max-Age=0` to clear it).
    static func sessionCookie(_ id: String, secure: Bool, maxAge: Int) -> String {
        "\(sessionCookieName(secure: secure))=\(id); Path=/; HttpOnly; SameSite=Strict\(secure ? "; Secure" : ""); Max-Age=\(maxAge)"
    }

    static func cookieValue(_ request: Request, _ name: String) -> String? {
        for header in request.headers[values: .cookie] {
            for part in header.split(separator: ";") {
                let kv = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1).map(String.init)
                if kv.count == 2, kv[0] == name { return kv[1] }
            }
        }
        return nil
    }
}
