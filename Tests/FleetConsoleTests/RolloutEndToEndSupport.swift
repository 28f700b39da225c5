import FleetTestSupport
import Foundation
import Synchronization
import Testing

// What the rollout end-to-end tests (issue 6) share: the fleet they roll to,
// a rollout read by its JSON names (``RolloutSnapshot``), polling a rollout
// with a deadline while every snapshot is kept, and the wire evidence of
// who was written when (``FleetProbe``'s `config/desired` record).
//
// The tests live in ``ConsoleEndToEndTests`` (serialized: a fleet of 20
// agents at `--speed 100` must not compete with another test for two cores)
// and read the console's JSON by its names (``WireJSON``), never through the
// console's own codecs.

// MARK: - The fleet

enum RolloutFleet {
    /// `north-01…north-NN` at clinic-north and `south-01…south-NN` at spa-south.
    static func devices(perSite count: Int) -> [FleetProbe.Device] {
        let north = (1...count).map { Fleet.device(Fleet.north, String(format: "north-%02d", $0)) }
        let south = (1...count).map { Fleet.device(Fleet.south, String(format: "south-%02d", $0)) }
        return north + south
    }

    /// The 20 massagers over two sites that issue 6's "Done when" asks for.
    static let twenty = devices(perSite: 10)

    /// `targets` naming both clinics (never `all: true`: a barrier device in
    /// `lab` would be a target too).
    static let bothSites: WireJSON = ["sites": [.string(Fleet.north), .string(Fleet.south)]]

    /// `"site/device"` addresses for `targets.devices`.
    static func addresses(_ devices: [FleetProbe.Device]) -> WireJSON {
        .array(devices.map { .string("\($0)") })
    }

    /// Good configs: valid for the console and the agents.
    static let shorterSessions: WireJSON = ["max_session_minutes": 18, "default_intensity": 4]

    /// Valid for the console (a ceiling may be lowered), but every agent's
    /// self-check then finds its calf programs unable to run (every calf
    /// level is at least 16 mmHg): they apply it and report `rolled_back`.
    static let calfCeilingTooLow: WireJSON = ["pressure_ceiling_mmhg": ["calf": 15]]
}

/// The states a device of a rollout may show (the contract's list).
enum RolloutDeviceStates {
    static let all: Set<String> = [
        "pending", "applying", "deferred", "verifying", "succeeded", "failed", "timed_out", "offline", "rolled_back",
    ]
}

// MARK: - A rollout read from the API

/// One `GET /api/v1/rollouts/{id}` (or a `POST` answer), read by its names:
/// `id`, `name`, `state`, `reason`, `waves[{index, size, state}]`,
/// `devices[{site, device, wave, state, version, error}]`, `counts`.
struct RolloutSnapshot: Sendable, CustomStringConvertible {
    let json: WireJSON

    init(_ json: WireJSON) {
        self.json = json
    }

    var id: String { json["id"]?.string ?? "?" }
    var state: String { json["state"]?.string ?? "?" }
    var reason: String? { json["reason"]?.string }
    var waves: [WireJSON] { json["waves"]?.array ?? [] }
    var devices: [WireJSON] { json["devices"]?.array ?? [] }
    var counts: [String: Int] { (json["counts"]?.object ?? [:]).compactMapValues(\.int).filter { $0.value != 0 } }

    /// Wave sizes in order of `index`.
    var waveSizes: [Int] { waves.sorted { ($0["index"]?.int ?? 0) < ($1["index"]?.int ?? 0) }.compactMap { $0["size"]?.int } }

    func waveState(_ index: Int) -> String {
        waves.first { $0["index"]?.int == index }?["state"]?.string ?? "missing"
    }

    func entry(_ device: FleetProbe.Device) -> WireJSON? {
        devices.first { $0["site"]?.string == device.site && $0["device"]?.string == device.device }
    }

    /// The device's state ("missing" when the rollout does not list it).
    func state(of device: FleetProbe.Device) -> String { entry(device)?["state"]?.string ?? "missing" }

    func wave(of device: FleetProbe.Device) -> Int? { entry(device)?["wave"]?.int }

    func version(of device: FleetProbe.Device) -> Int? { entry(device)?["version"]?.int }

    /// Every listed device, as addresses.
    var addresses: [FleetProbe.Device] {
        devices.compactMap { item in
            guard let site = item["site"]?.string, let device = item["device"]?.string else { return nil }
            return FleetProbe.Device(site: site, device: device)
        }
    }

    /// The devices of wave `index`.
    func members(ofWave index: Int) -> [FleetProbe.Device] {
        addresses.filter { wave(of: $0) == index }
    }

    /// The devices in `state`.
    func devices(in state: String) -> [FleetProbe.Device] {
        addresses.filter { self.state(of: $0) == state }
    }

    /// Wave order, as one snapshot shows it: no device of a wave has left
    /// `pending` while a device of an earlier wave is not in `settled`.
    func waveOrderProblems(settled: Set<String>) -> [String] {
        var problems: [String] = []
        for device in addresses where state(of: device) != "pending" {
            guard let wave = wave(of: device) else { continue }
            for earlier in addresses where (self.wave(of: earlier) ?? 0) < wave && !settled.contains(state(of: earlier)) {
                problems.append(
                    "\(device) (wave \(wave)) is \(state(of: device)) while \(earlier) (wave \(self.wave(of: earlier) ?? -1)) is \(state(of: earlier))")
            }
        }
        return problems
    }

    var description: String {
        let waveText = waves.map { "\($0["index"]?.int ?? -1):\($0["size"]?.int ?? -1) \($0["state"]?.string ?? "?")" }
            .joined(separator: ", ")
        let deviceText = devices.map { item in
            "\(item["site"]?.string ?? "?")/\(item["device"]?.string ?? "?")[w\(item["wave"]?.int ?? -1)] "
                + "\(item["state"]?.string ?? "?")\(item["version"]?.int.map { " v\($0)" } ?? "")"
                + "\(item["error"]?.string.map { " (\($0))" } ?? "")"
        }.joined(separator: "; ")
        return "rollout \(id) \(state)\(reason.map { " (\($0))" } ?? ""), current_wave \(json["current_wave"]?.int ?? -1), "
            + "waves [\(waveText)], counts \(counts.sorted { $0.key < $1.key }), devices: \(deviceText)"
    }
}

/// Every snapshot a wait saw, in order (shared with the polling closure).
final class RolloutHistory: Sendable {
    private let snapshots = Mutex<[RolloutSnapshot]>([])

    func append(_ snapshot: RolloutSnapshot) { snapshots.withLock { $0.append(snapshot) } }

    var all: [RolloutSnapshot] { snapshots.withLock { $0 } }
    var last: RolloutSnapshot? { snapshots.withLock { $0.last } }

    /// Every device seen in `state` in any snapshot.
    func everSeen(in state: String) -> Set<FleetProbe.Device> {
        Set(all.flatMap { $0.devices(in: state) })
    }
}

// MARK: - The rig, for rollouts

extension ConsoleRig {
    /// `POST /api/v1/rollouts` with `document` (admin by default); the
    /// answer must be 201 with a rollout that has an id.
    func createRollout(
        _ document: WireJSON, token: String? = nil, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> RolloutSnapshot {
        let response = try await api.post("/api/v1/rollouts", json: document, token: token ?? tokens.admin)
        try #require(response.status == 201, "POST /api/v1/rollouts \(document): \(response)", sourceLocation: sourceLocation)
        let json = try #require(response.json, "\(response)", sourceLocation: sourceLocation)
        try #require(json["id"]?.string?.isEmpty == false, "the rollout has no id: \(response)", sourceLocation: sourceLocation)
        return RolloutSnapshot(json)
    }

    /// `GET /api/v1/rollouts/{id}` (admin by default); must be 200.
    func rollout(_ id: String, token: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) async throws -> RolloutSnapshot {
        RolloutSnapshot(try await getJSON("/api/v1/rollouts/\(id)", token: token, sourceLocation: sourceLocation))
    }

    /// `POST /api/v1/rollouts/{id}/{action}` with `token` (admin by default), any status.
    func controlRollout(_ id: String, _ action: String, token: String? = nil) async throws -> ConsoleResponse {
        try await api.post("/api/v1/rollouts/\(id)/\(action)", token: token ?? tokens.admin)
    }

    /// Polls `GET /api/v1/rollouts/{id}` every 100 ms, keeps every snapshot in
    /// `history`, and returns the first that satisfies `condition`. On timeout
    /// the last snapshot and the console's log tail say why.
    @discardableResult
    func waitForRollout(
        _ id: String,
        timeout: Duration = .seconds(60),
        history: RolloutHistory = RolloutHistory(),
        _ description: String,
        until condition: @escaping @Sendable (RolloutSnapshot) -> Bool
    ) async throws -> RolloutSnapshot {
        let api = self.api
        let token = tokens.admin
        do {
            return try await waitForValue(timeout: timeout, pollEvery: .milliseconds(100), "rollout \(id): \(description)") {
                let response = try await api.get("/api/v1/rollouts/\(id)", token: token)
                guard response.status == 200, let json = response.json else {
                    throw FixtureError("GET /api/v1/rollouts/\(id) while waiting for \(description): \(response)")
                }
                let snapshot = RolloutSnapshot(json)
                history.append(snapshot)
                return condition(snapshot) ? snapshot : nil
            }
        } catch let error as TimeoutError {
            throw TimeoutError(
                condition: error.condition, timeout: timeout,
                detail: "last snapshot: \(history.last.map(\.description) ?? "none")\n" + console.diagnostics(lines: 30))
        }
    }

    /// The audit entries (newest first) whose fields mention `text`.
    func auditEntries(mentioning text: String) async throws -> [WireJSON] {
        let entries = try #require(try await getJSON("/api/v1/audit?limit=1000")["entries"]?.array, "no entries array")
        return entries.filter { $0.text.contains(text) }
    }

    /// Runs `fleet-console <arguments> --api URL` with `token` (admin by default).
    func cli(_ arguments: [String], token: String? = nil) async throws -> ProcessRunner.Completed {
        try await console.runClient(arguments, token: token ?? tokens.admin)
    }

    /// Writes `text` as a file in the console's test directory and returns its path.
    func writeFile(_ name: String, _ text: String) throws -> String {
        let url = console.directory.file(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }
}

// MARK: - The wire

extension FleetProbe {
    /// Desired configs written on the device's `config/desired` topic (by
    /// anyone; an empty retained payload, a clear, is left out), in arrival
    /// order, from index `after` on.
    func desiredWrites(for device: Device, after: Int = 0) -> [Message] {
        messages(for: device, kind: "config/desired", after: after).filter { !$0.payload.isEmpty }
    }

    /// The first reported config of `version` in `state` from index `after` on.
    func reported(_ device: Device, version: Int, state: String, after: Int = 0) -> Message? {
        reportedConfigs(for: device, after: after).first { $0["version"]?.int == version && $0["state"]?.string == state }
    }

    /// The first telemetry or status of the device after arrival index `index`.
    func healthSignal(of device: Device, after index: Int) -> Message? {
        messages(for: device, after: index + 1).first { $0.kind == "telemetry" || $0.kind == "status" }
    }
}

extension WireJSON {
    /// Whether this desired `config` holds what `expected` holds: the same
    /// members, a `null` member counting as absent.
    func sameConfig(as expected: WireJSON) -> Bool {
        guard let mine = object, let theirs = expected.object else { return self == expected }
        return mine.filter { !$0.value.isNull } == theirs.filter { !$0.value.isNull }
    }

    /// `{key: self}`, e.g. a list of addresses as `targets.devices`.
    func wrapped(as key: String) -> WireJSON { [key: self] }
}
