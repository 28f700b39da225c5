import Foundation
import Synchronization

/// The API tokens in force and who they say the caller is. `Authenticator`
/// (the HTTP edge) asks it once per request; the dashboard asks again on
/// every page and live update, so a session ends with its token.
public final class AccessControl: Sendable {
    private let tokens: Mutex<[TokenEntry]>

    init(tokens: [TokenEntry]) {
        self.tokens = Mutex(tokens)
    }

    /// The principal of a bearer token; constant-time comparison of SHA-256 digests.
    public func authenticate(authorization: String?) throws(ConsoleError) -> Principal {
        guard let authorization, authorization.lowercased().hasPrefix("bearer ") else { throw .unauthorized() }
        let token = String(authorization.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        guard !token.isEmpty else { throw .unauthorized() }
        guard let principal = principal(tokenDigest: TokenEntry.hash(token)) else { throw .unauthorized("the bearer token is not valid") }
        return principal
    }

    /// The principal of the token with this SHA-256 among the tokens in
    /// force now, or nil.
    func principal(tokenDigest digest: [UInt8]) -> Principal? {
        let entries = tokens.withLock { $0 }
        var match: TokenEntry?
        for entry in entries where constantTimeEqual(entry.sha256, digest) { match = entry }
        return match.map { Principal(name: $0.name, role: $0.role, sites: $0.sites) }
    }

    /// Puts `entries` in force instead of the current tokens (reloading the
    /// tokens file, issue 20 item 13). A removed token fails its next API
    /// call, and the dashboard sessions signed in with it end at their next
    /// page or live update (within a second for a stream). Returns the names
    /// of the tokens that ended (removed, or their entry changed) and of
    /// those added, for the log.
    @discardableResult
    public func replaceTokens(_ entries: [TokenEntry]) -> (ended: [String], added: [String]) {
        let old = tokens.withLock { all in
            defer { all = entries }
            return all
        }
        return (old.filter { !entries.contains($0) }.map(\.name), entries.filter { !old.contains($0) }.map(\.name))
    }
}

func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for i in 0..<a.count { diff |= a[i] ^ b[i] }
    return diff == 0
}
