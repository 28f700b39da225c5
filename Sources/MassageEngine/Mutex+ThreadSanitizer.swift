#if MASSAGEFLEET_TSAN
#if canImport(Glibc)
import Glibc
#endif

// ThreadSanitizer builds only (deploy/test.sh sets MASSAGEFLEET_TSAN=1, and
// Package.swift then defines MASSAGEFLEET_TSAN for this module). Synchronization.Mutex locks through
// libswiftSynchronization, which is not built with TSan: TSan sees neither
// its lock nor its unlock, so it orders no critical section after another
// and reports every Mutex-protected access from two threads as a race (a
// counter under a Mutex on two threads is enough to show it, Swift 6 on
// Linux). Rather than suppress those reports wholesale, which would hide
// real races too, this module's `Mutex` shadows Synchronization's in TSan
// builds: the same `withLock` over a pthread mutex, whose lock and unlock
// TSan intercepts. Normal builds use Synchronization.Mutex.
//
// @unchecked Sendable: like Synchronization.Mutex, every access to `value`
// happens inside `withLock`, between pthread_mutex_lock and unlock.
struct Mutex<Value>: ~Copyable, @unchecked Sendable {
    private final class Storage {
        let lock: UnsafeMutablePointer<pthread_mutex_t>
        var value: Value

        init(_ value: Value) {
            self.value = value
            lock = .allocate(capacity: 1)
            lock.initialize(to: pthread_mutex_t())
            pthread_mutex_init(lock, nil)
        }

        deinit {
            pthread_mutex_destroy(lock)
            lock.deinitialize(count: 1)
            lock.deallocate()
        }
    }

    private let storage: Storage

    init(_ initialValue: Value) {
        storage = Storage(initialValue)
    }

    borrowing func withLock<Result, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result {
        pthread_mutex_lock(storage.lock)
        defer { pthread_mutex_unlock(storage.lock) }
        return try body(&storage.value)
    }
}
#endif
