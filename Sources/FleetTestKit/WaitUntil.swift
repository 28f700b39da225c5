/// Waits until `condition` returns true, polling it every `pollEvery`,
/// and throws ``TimeoutError`` naming `description` when `timeout` passes
/// first.
///
/// This is the one way tests wait: never sleep a fixed time and hope.
/// The condition is checked once more at the deadline, so a condition
/// that becomes true just in time still passes. An error thrown by the
/// condition ends the wait and is rethrown as is; cancellation of the
/// calling task ends it with `CancellationError`.
///
/// The condition runs in the caller's isolation, so it may touch the
/// caller's (non-Sendable) state.
///
/// ```swift
/// try await waitUntil(timeout: .seconds(5), "the subscriber got 3 messages") {
///     received.count == 3
/// }
/// ```
public func waitUntil(
    timeout: Duration,
    pollEvery: Duration = .milliseconds(20),
    _ description: String,
    isolation: isolated (any Actor)? = #isolation,
    _ condition: () async throws -> Bool
) async throws {
    _ = try await waitForValue(
        timeout: timeout, pollEvery: pollEvery, description, isolation: isolation
    ) { () async throws -> Bool? in
        try await condition() ? true : nil
    }
}

/// Waits until `produce` returns a value (not nil) and returns it, polling
/// every `pollEvery`; throws ``TimeoutError`` naming `description` when
/// `timeout` passes first. Same rules as ``waitUntil(timeout:pollEvery:_:isolation:_:)``.
///
/// ```swift
/// let status = try await waitForValue(timeout: .seconds(5), "a status message") {
///     store.latestStatus
/// }
/// ```
public func waitForValue<Value>(
    timeout: Duration,
    pollEvery: Duration = .milliseconds(20),
    _ description: String,
    isolation: isolated (any Actor)? = #isolation,
    _ produce: () async throws -> Value?
) async throws -> Value {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while true {
        if let value = try await produce() {
            return value
        }
        let now = clock.now
        if now >= deadline {
            throw TimeoutError(condition: description, timeout: timeout)
        }
        let next = now.advanced(by: pollEvery)
        try await Task.sleep(until: next < deadline ? next : deadline, clock: clock)
    }
}
