import Foundation
import Logging

/// The audit log: who did what, to which devices, with what outcome. Every
/// service that acts for a person records through it; a failed write is
/// logged, never an error for the action it records.
struct AuditTrail: Sendable {
    let store: any AuditLog
    let logger: Logger

    func record(_ principal: Principal, _ action: String, targets: String, outcome: String, detail: String? = nil) async {
        await record(AuditDraft(actor: principal.name, action: action, targets: targets, outcome: outcome, detail: detail))
    }

    func record(_ entry: AuditDraft) async {
        do { try await store.audit(entry) } catch {
            logger.error("could not write the audit log", metadata: ["error": "\(error)"])
        }
    }

    /// `GET /api/v1/audit` (admin of every site).
    func entries(for principal: Principal, limit: Int) async throws(ConsoleError) -> [AuditEntry] {
        try principal.require(.admin, for: "the audit log")
        // The log covers every site (sign-ins, rollouts, commands anywhere):
        // an admin limited to some sites may not read it (issue 20, item 7).
        if let sites = principal.sites {
            throw .forbidden("the audit log covers every site; token '\(principal.name)' is limited to \(sites.sorted().joined(separator: ", "))")
        }
        do { return try await store.auditEntries(limit: max(1, min(limit, 10_000))) } catch { throw .unavailable("the audit log cannot be read: \(error)") }
    }
}
