import FleetProtocol
import Foundation
import MassageEngine
import Mosquitto

extension AgentService {
    /// Answers one message on the `cmd` topic. Order: decode → repeated id
    /// (first reply again, nothing runs) → expiry → a start's `expires_at`
    /// required and at most `commands.max_start_ttl_s` ahead → run. Any payload gets a
    /// reply when there is somewhere to send it; nothing here can stop the agent.
    func handleCommand(_ message: MQTTMessage) async {
        let responseTopic = message.properties.responseTopic
        let correlation = message.properties.correlationData
        switch decodeCommand(message.payload) {
        case .failure(let rejection):
            logger.notice("refused a command", metadata: ["command.id": "\(rejection.id ?? "-")", "error": "\(rejection.error)"])
            let reply = encodeReply(.failure(id: rejection.id, error: rejection.error))
            if let id = rejection.id, !id.isEmpty { try? await replies.record(id: id, reply: Data(reply)) }
            await send(reply, to: responseTopic ?? rejection.replyTo, correlation: correlation)
        case .success(let incoming):
            let command = incoming.command
            let target = responseTopic ?? command.replyTo
            if let previous = try? await replies.reply(for: command.id) {
                logger.info("repeated command id: sending the first reply again", metadata: ["command.id": "\(command.id)"])
                await send(Array(previous), to: target, correlation: correlation)
                return
            }
            let reply: OutgoingReply
            let now = Date()
            if let expired = command.expiryError(now: now) {
                reply = .failure(id: command.id, error: expired)
            } else if let refused = command.startWindowError(now: now, maxTTL: configuration.maxStartTTLSeconds) {
                reply = .failure(id: command.id, error: refused)
            } else {
                reply = await execute(incoming.request, id: command.id)
            }
            logger.info("command", metadata: ["command.id": "\(command.id)", "command.action": "\(command.action)", "ok": "\(reply.failure == nil)",
                                                "error": "\(reply.failure.map { "\($0)" } ?? "-")"])
            let bytes = encodeReply(reply)
            // Stored before it is sent (awaited, not blocking a thread).
            do { try await replies.record(id: command.id, reply: Data(bytes)) } catch {
                logger.error("could not remember a command id", metadata: ["command.id": "\(command.id)", "error": "\(error)"])
            }
            await send(bytes, to: target, correlation: correlation)
        }
        do { try await replies.pruneIfDue() } catch {
            logger.warning("could not prune the remembered command ids; retried later", metadata: ["error": "\(error)"])
        }
    }

    private func encodeReply(_ reply: OutgoingReply) -> [UInt8] {
        (try? Array(FleetJSON.encode(reply))) ?? Array(#"{"id":null,"ok":false,"error":{"code":"internal","message":"reply could not be encoded"}}"#.utf8)
    }

    private func send(_ reply: [UInt8], to topic: String?, correlation: [UInt8]?) async {
        guard let topic, TopicRoot.isValidPublishTopic(topic) else {
            logger.notice("a command had no valid response topic or reply_to; no reply sent")
            return
        }
        do {
            try await client.publish(topic, payload: reply, qos: .atLeastOnce, properties: MQTTProperties(correlationData: correlation, contentType: "application/json"))
        } catch {
            logger.warning("could not send a command reply", metadata: ["topic": "\(topic)", "error": "\(error)"])
        }
    }

    func execute(_ request: CommandRequest, id: String) async -> OutgoingReply {
        do {
            switch request {
            case .ping:
                return .success(id: id, result: PingResult(epoch: epoch))
            case .getStatus:
                let t = engine.telemetry()
                let telemetry = WireMapping.telemetry(t, interval: configuration.telemetryIntervalSeconds)
                let status = statusBody()
                return .success(id: id, result: GetStatusResult(
                    agentVersion: Self.version, epoch: epoch, programs: status.programs ?? [], configVersion: appliedVersion,
                    capabilities: status.capabilities ?? [], sessionState: telemetry.sessionState, sessionID: telemetry.sessionID,
                    program: telemetry.program, scheduled: engine.schedules().map(Self.entry)))
            case .resync:
                await publishStatus()
                await enqueueUsage()
                await republishReported()
                await replayDeliveredEvents()
                return .success(id: id, result: ResyncResult(republished: ["status", "usage", "config/reported", "events"]))
            case .startSession(let params):
                let request = sessionRequest(params)
                let session = try engine.start(request)
                let program = engine.telemetry().programID
                return .success(id: id, result: StartSessionResult(
                    sessionID: session.rawValue, program: WireMapping.programID(program) ?? "", durationSeconds: duration(of: request),
                    intensity: request.intensity))
            case .clearFault:
                let ack = try engine.acknowledgeFaults()
                logger.notice("latched faults acknowledged remotely", metadata: ["command.id": "\(id)", "faults.cleared": "\(ack.cleared.map(\.description))"])
                return .success(id: id, result: ClearFaultResult(cleared: WireMapping.faults(ack.cleared), stillActive: WireMapping.faults(ack.stillActive)))
            case .scheduleSession(let params):
                let scheduled = try engine.schedule(sessionRequest(params.session), at: params.at)
                // Acknowledged only once it is in storage: a power cut after the
                // reply must not lose a booking the console was told about.
                do { try await persistence.flush() } catch {
                    try? engine.cancelScheduled(scheduled.id)
                    try? await persistence.flush()
                    throw error
                }
                var result = try JSONValue(encoding: Self.entry(scheduled))
                if case .object(var fields) = result {
                    fields["session_id"] = .string(scheduled.sessionID.rawValue)
                    fields["duration_s"] = .number(Double(scheduled.durationSeconds))
                    result = .object(fields)
                }
                return .success(id: id, result: result)
            case .cancelScheduled(let params):
                try engine.cancelScheduled(ScheduleID(rawValue: params.scheduleID))
                return .success(id: id, result: CancelScheduledResult(scheduleID: params.scheduleID))
            case .stopSession(let params):
                try checkSession(params.sessionID)
                let session = engine.telemetry().sessionID
                try engine.stop(reason: .remoteStop)
                return .success(id: id, result: SessionControlResult(sessionID: session?.rawValue ?? "", sessionState: .stopping))
            case .pauseSession(let params):
                try checkSession(params.sessionID)
                try engine.pause()
                return controlResult(id: id)
            case .resumeSession(let params):
                try checkSession(params.sessionID)
                try engine.resume()
                return controlResult(id: id)
            case .adjustIntensity(let params):
                try checkSession(params.sessionID)
                try engine.adjustIntensity(params.intensity)
                return controlResult(id: id)
            }
        } catch let error as EngineError {
            return .failure(id: id, error: WireMapping.protocolError(error))
        } catch let error as ProtocolError {
            return .failure(id: id, error: error)
        } catch {
            logger.error("command failed unexpectedly", metadata: ["command.id": "\(id)", "error": "\(error)"])
            return .failure(id: id, error: .internal("the device could not complete the command: \(error)"))
        }
    }

    private func sessionRequest(_ params: StartSessionParams) -> SessionRequest {
        let intensity = params.intensity ?? state.withLock { $0.applied.config.defaultIntensity }
        switch params.plan {
        case .program(let id): return .program(id.rawValue, intensity: intensity)
        case .steps(let steps): return .steps(steps, intensity: intensity)
        }
    }

    private func duration(of request: SessionRequest) -> Int? {
        switch request.source {
        case .program(let id): return engine.programs[id]?.totalSeconds
        case .steps(let steps): return steps.reduce(0) { $0 + $1.durationSeconds }
        }
    }

    /// A command naming a session must name the running one.
    private func checkSession(_ id: String?) throws {
        guard let id else { return }
        let running = engine.telemetry().sessionID?.rawValue
        guard running == id else {
            throw ProtocolError.notFound("session \"\(id)\" is not running" + (running.map { "; the running session is \"\($0)\"" } ?? "; no session is running"))
        }
    }

    private func controlResult(id: String) -> OutgoingReply {
        let t = engine.telemetry()
        let wire = WireMapping.telemetry(t, interval: configuration.telemetryIntervalSeconds)
        return .success(id: id, result: SessionControlResult(sessionID: t.sessionID?.rawValue ?? "", sessionState: wire.sessionState, intensity: t.intensity))
    }

    static func entry(_ s: ScheduledSession) -> ScheduleEntry {
        ScheduleEntry(scheduleID: s.id.rawValue, at: s.at, program: WireMapping.programID(s.program.id) ?? s.program.id)
    }
}
