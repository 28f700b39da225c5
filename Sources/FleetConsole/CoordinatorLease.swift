import Foundation

/// This console process's hold on the `coordinator` lease (docs/scaling.md;
/// Coordinator.swift decides what holding it means). It needs the store's
/// lease table and nothing else of it.
struct CoordinatorLease: Sendable {
    static let name = "coordinator"
    let store: any LeaseStore
    /// Who this process is in the lease table: its instance and a per-process
    /// id, so two processes started with the same name never both hold it.
    let holder: String

    init(store: any LeaseStore, instance: String) {
        self.store = store
        holder = "\(instance)/\(UUID().uuidString.lowercased().prefix(8))"
    }

    /// Takes or renews the lease for `seconds` by the database's clock: true while this process has it.
    func renew(for seconds: Double) async throws -> Bool {
        try await store.acquireLease(Self.name, holder: holder, for: seconds)
    }

    /// Gives it up at once (a clean shutdown), so another replica takes over without waiting for it to expire.
    func release() async {
        try? await store.releaseLease(Self.name, holder: holder)
    }
}
