import FleetTestSupport
import Foundation
@testable import Mosquitto
import Synchronization
import Testing

/// Calls racing `shutdown()` (issue 20, item 15). A publish, subscribe or
/// unsubscribe used to ask `mosquitto_want_write` after releasing the lock
/// that keeps the handle alive, so the loop thread could destroy the handle
/// in between and libmosquitto read freed memory; and a QoS ≥ 1 call whose
/// client was destroyed in that gap waited for an acknowledgement forever.
///
/// The first tests make the gap certain: a test seam runs right after the
/// call left the lock and shuts the client down there, and `usesAfterDestroy`
/// counts every touch of the handle after `mosquitto_destroy`. The last one
/// is the plain stress (many publishers, shutdown in the middle), which the
/// ThreadSanitizer pass of deploy/test.sh also runs.
@Suite("MQTT client: calls racing shutdown", .tags(.e2e))
struct ShutdownRaceTests {
    enum Operation: String, CaseIterable, CustomTestStringConvertible, Sendable {
        case publishQoS0, publishQoS1, publishNoWait, subscribe, unsubscribe
        var testDescription: String { rawValue }

        func run(on client: MQTTClient) async throws {
            switch self {
            case .publishQoS0: try await client.publish("race/x", payload: bytes("0"), qos: .atMostOnce)
            case .publishQoS1: try await client.publish("race/x", payload: bytes("1"), qos: .atLeastOnce)
            case .publishNoWait: try client.publishNoWait("race/x", payload: bytes("n"), qos: .atLeastOnce)
            case .subscribe: try await client.subscribe("race/#", qos: .atLeastOnce)
            case .unsubscribe: try await client.unsubscribe(["race/#"])
            }
        }
    }

    /// A seam that, the first time a call leaves the handle's lock, shuts
    /// the client down (as `shutdown()` or `closeAbruptly()` would) and
    /// returns only once the loop thread destroyed the handle.
    static func shutDownAfterFirstCall(_ client: MQTTClient, abruptly: Bool) {
        let core = client.core
        core.afterHandleCall.withLock { hook in
            hook = { [core] in
                core.afterHandleCall.withLock { $0 = nil }
                core.state.withLock { $0.shuttingDown = true }
                core.loop.submit(abruptly ? .abort(core) : .shutdown(core))
                // A synchronous wait on a condition with a deadline: this
                // runs inside the call under test, which cannot await.
                let deadline = ContinuousClock.now + .seconds(10)
                while !core.state.withLock({ $0.closed }), ContinuousClock.now < deadline {
                    usleep(1000)
                }
            }
        }
    }

    @Test("a call whose client is destroyed right after it left the lock never touches the handle again and does not hang",
          arguments: Operation.allCases, [false, true])
    func destroyedRightAfterTheCall(_ operation: Operation, abruptly: Bool) async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        let client = try await makeClient(broker, "race-\(operation.rawValue)")
        Self.shutDownAfterFirstCall(client, abruptly: abruptly)

        let outcome = LockedBox<Result<Void, any Error>?>(nil)
        let call = Task {
            do { try await operation.run(on: client); outcome.mutex.withLock { $0 = .success(()) } } catch { outcome.mutex.withLock { $0 = .failure(error) } }
        }
        try await waitUntil(timeout: .seconds(15), "\(operation) to return after the client was destroyed under it") {
            outcome.mutex.withLock { $0 != nil }
        }
        _ = await call.result
        #expect(client.connectionState == .closed)
        #expect(client.core.usesAfterDestroy.load(ordering: .relaxed) == 0, "the libmosquitto handle was used after mosquitto_destroy")
        if case .failure(let error)? = outcome.mutex.withLock({ $0 }) {
            // QoS 0 and the no-wait publish were handed over before the
            // shutdown; the others cannot be acknowledged any more.
            #expect((error as? MQTTError)?.code == .shutdown || (error as? MQTTError)?.code == .connectionLost, "\(operation): \(error)")
        }
        await client.shutdown()
    }

    @Test("many publishers racing shutdown and abrupt closes: every call ends, with success or a shutdown error")
    func publishersRacingShutdown() async throws {
        let broker = try await MosquittoBroker.start()
        defer { broker.stopNow() }
        let group = MQTTEventLoopGroup(numberOfThreads: 2)
        for round in 0..<3 {
            let clients = try await withThrowingTaskGroup(of: MQTTClient.self) { tasks in
                for i in 0..<6 { tasks.addTask { try await makeClient(broker, "stress-\(round)-\(i)", group: group) } }
                return try await tasks.reduce(into: []) { $0.append($1) }
            }
            let unexpected = LockedBox<[String]>([])
            await withTaskGroup(of: Void.self) { tasks in
                for (index, client) in clients.enumerated() {
                    let sent = LockedBox<Int>(0)
                    for publisher in 0..<3 {
                        tasks.addTask {
                            let qos: QoS = publisher == 0 ? .atMostOnce : .atLeastOnce
                            while true {
                                do {
                                    if publisher == 2 {
                                        try client.publishNoWait("stress/\(index)", payload: bytes("n"), qos: qos)
                                    } else {
                                        try await client.publish("stress/\(index)", payload: bytes("p"), qos: qos)
                                    }
                                    sent.mutex.withLock { $0 += 1 }
                                    // A QoS 0 publish returns without suspending: without a
                                    // yield these loops hold the cooperative pool's threads and
                                    // the shutdown task never runs (a livelock under TSan).
                                    await Task.yield()
                                } catch let error as MQTTError where [.shutdown, .notConnected, .connectionLost, .tooManyInFlight].contains(error.code) {
                                    if error.code == .shutdown { return }
                                    await Task.yield()
                                } catch {
                                    unexpected.mutex.withLock { $0.append("\(error)") }
                                    return
                                }
                            }
                        }
                    }
                    tasks.addTask {
                        // Shut down in the middle of the stream, half of them abruptly.
                        // (Or after 10 s, should the publishers have stopped early.)
                        let deadline = ContinuousClock.now + .seconds(10)
                        while sent.mutex.withLock({ $0 }) < 20 + index * 7, ContinuousClock.now < deadline { await Task.yield() }
                        if index.isMultiple(of: 2) { await client.shutdown() } else { await client.closeAbruptly() }
                    }
                }
            }
            #expect(unexpected.mutex.withLock { $0 }.isEmpty, "round \(round): \(unexpected.mutex.withLock { $0 })")
            for client in clients {
                #expect(client.connectionState == .closed)
                #expect(client.core.usesAfterDestroy.load(ordering: .relaxed) == 0)
            }
        }
    }
}
