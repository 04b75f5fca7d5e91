import Glibc
import Buffers
import MemcacheProtocol

// Writes go to every live replica at once. The client gets the answer of the
// first replica in ring order that gave one (the primary's, unless it failed):
// with write_policy `all` once every replica has answered, with `primary` as
// soon as that first answer is in. During a membership change a write may also
// go to the key's old owners, and delete it at nodes that must not keep a copy
// (`KeyRoute`); those deletes are always awaited before the client's answer.
extension ProxiedRequest {
    /// Sends the request to every live node of `route.writes`, and a delete
    /// to every live node of `route.invalidations` (positions after the
    /// writes'). A write waits while a copy of its key, or a write of it from
    /// another worker, is under way (`KeyFence`).
    func sendWrite() {
        guard let topology else { return }
        var backends: [BackendConnection?] = []
        for index in route.writes {
            backends.append(worker.backend(for: topology.nodes[index], session: session))
        }
        for index in route.invalidations {
            backends.append(worker.backend(for: topology.nodes[index], session: session))
        }
        let live = backends.reduce(0) { $0 + ($1 == nil ? 0 : 1) }
        guard enterFence(count: live) else { return }
        outstanding = 0
        var writesSent = 0
        for (position, backend) in backends.enumerated() {
            guard let backend else {
                positions.append(.notSent)
                continue
            }
            positions.append(.pending)
            outstanding += 1
            if position < route.writes.count {
                writesSent += 1
                send(to: backend, position: position, changesData: true, fence: fenceStripe, shape: shape) { output in
                    output.append(wire.readableBytes)
                }
            } else {
                send(to: backend, position: position, changesData: true, fence: fenceStripe, shape: .meta) { output in
                    RequestEncoder.appendMetaDelete(keyBytes, base64: keyIsBase64, to: &output)
                }
            }
        }
        if writesSent < route.writes.count { worker.counters.add(.degradedWrites) }
        if writesSent == 0 {
            worker.counters.add(.unavailable)
            complete(line: "SERVER_ERROR no live node holds this key")
        }
        finishQuietWrite()
    }

    /// Sends a compare-and-swap to the first live replica only: CAS uniques
    /// differ between replicas, so only the node whose `gets` the client saw can
    /// judge it. A success is then copied to the others (`CompareAndSwapCopy`).
    func sendCompareAndSwap() {
        guard let topology else { return }
        var next = topology.nextLive(in: route.reads, from: 0)
        while let position = next {
            next = topology.nextLive(in: route.reads, from: position + 1)
            if let backend = worker.backend(for: topology.node(at: position, of: route.reads), session: session) {
                guard enterFence(count: 1) else { return }
                while positions.count < position { positions.append(.notSent) }
                positions.append(.pending)
                outstanding = 1
                send(to: backend, position: position, changesData: true, fence: fenceStripe, shape: shape) { output in
                    output.append(wire.readableBytes)
                }
                finishQuietWrite()
                return
            }
        }
        worker.counters.add(.unavailable)
        complete(line: "SERVER_ERROR no live node holds this key")
    }

    /// Enters the key's fence stripe for `count` node requests, when this
    /// write takes it. False when a copy of the key, or another worker's write
    /// of it, is under way: the write is sent again shortly, and the session's
    /// later requests wait for it.
    private func enterFence(count: Int) -> Bool {
        guard fenceStripe >= 0, count > 0 else { return true }
        if worker.context.fence.tryEnterWrite(fenceStripe, count: count, worker: worker.index) {
            waitingForFence = false
            return true
        }
        if !waitingForFence {
            waitingForFence = true
            session?.hold(until: self)
        }
        worker.retryWhenFenceOpens(self)
        return false
    }

    /// Classic noreply: once sent, nothing will be written back, so later
    /// replies need not wait for this one.
    private func finishQuietWrite() {
        if noreply && !isComplete {
            checkReplicas(awaitLanding: true)
            reply.removeAll()
            complete()
        }
    }

    /// Sends a write that waited for its key's fence (`KeyFence`).
    func resumeWrite() {
        switch work {
        case .write: sendWrite()
        case .compareAndSwap: sendCompareAndSwap()
        default: break
        }
    }

    /// Whether `position` is one of the deletes at `route.invalidations`
    /// rather than the request itself (plain writes only).
    private func isInvalidation(_ position: Int) -> Bool {
        if case .write = work { return position >= route.writes.count }
        return false
    }

    /// One unit of a replica's answer. False when it cannot belong to it.
    func writeReceived(_ unit: Response, _ bytes: UnsafeRawBufferPointer, position: Int, last: Bool,
                       node: BackendNode) -> Bool {
        guard position < positions.count else { return true }
        if isInvalidation(position) {
            // Deleted or not there: either way the node holds no copy now.
            positions[position] = .answered(0..<0)
            outstanding -= 1
            finishWriteIfDecided()
            return true
        }
        let answer: Range<Int>
        let succeeded: Bool
        if shape == .quietMeta {
            if !last {
                // A quiet request gets at most one line before its MN.
                guard positions[position] == .pending else { return false }
                let start = answers.readableCount
                answers.append(bytes)
                positions[position] = .heard(start..<answers.readableCount)
                return true
            }
            if case .heard(let range) = positions[position] {
                answer = range
                succeeded = false
            } else {
                // The node hid the answer: the nominal success (HD).
                answer = answers.readableCount..<answers.readableCount
                succeeded = true
            }
        } else {
            let start = answers.readableCount
            answers.append(bytes)
            answer = start..<answers.readableCount
            succeeded = unit.kind == .stored || unit.kind == .metaHit
        }
        positions[position] = .answered(answer)
        outstanding -= 1
        if succeeded || unit.kind == .deleted || unit.kind == .number || unit.kind == .metaValue { changedData = true }
        if case .compareAndSwap = work, succeeded {
            CompareAndSwapCopy.copy(from: self, casNode: node)
            checkReplicas(awaitLanding: true)
        }
        finishWriteIfDecided()
        return true
    }

    func writeFailed(position: Int, node: BackendNode, failure: BackendFailure) {
        guard position < positions.count else { return }
        positions[position] = .failed
        outstanding -= 1
        finishWriteIfDecided()
    }

    /// Completes once the answer the client gets is known.
    private func finishWriteIfDecided() {
        let waitForAll = topology?.configuration.writePolicy != .primary
        if waitForAll && outstanding > 0 { return }
        // A delete at a node that must not keep a copy is awaited whatever the
        // policy: once the client has its answer, no proxy may read an older value there.
        for (position, state) in positions.enumerated() where isInvalidation(position) {
            if case .pending = state { return }
        }
        for (position, state) in positions.enumerated() where !isInvalidation(position) {
            switch state {
            case .notSent, .failed:
                continue
            case .pending, .heard:
                return
            case .answered(let range):
                if case .write = work, changedData || outstanding > 0 { checkReplicas(awaitLanding: outstanding > 0) }
                return completeWithAnswer(range)
            }
        }
        if outstanding == 0 {
            worker.counters.add(.unavailable)
            complete(line: "SERVER_ERROR write failed on every replica")
        }
    }

    /// Has the key's replicas compared once this write landed (`ReplicaCheck`);
    /// a touch changes no value.
    private func checkReplicas(awaitLanding: Bool) {
        guard command != .touch else { return }
        ReplicaCheck.start(after: self, awaitLanding: awaitLanding)
    }

    private func completeWithAnswer(_ range: Range<Int>) {
        let answer = UnsafeRawBufferPointer(rebasing: answers.readableBytes[range])
        countOutcome(answer)
        reply.removeAll()
        reply.append(answer)
        complete()
    }

    /// memcached's per-command hit and miss counters, from the answer the client gets.
    private func countOutcome(_ answer: UnsafeRawBufferPointer) {
        func starts(_ word: StaticString) -> Bool {
            answer.count >= word.utf8CodeUnitCount
                && memcmp(answer.baseAddress!, word.utf8Start, word.utf8CodeUnitCount) == 0
        }
        let counters = worker.counters
        let isNumber = answer.first.map { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") } ?? false
        switch command {
        case .delete: counters.add(starts("DELETED") ? .deleteHits : .deleteMisses)
        case .incr: counters.add(isNumber ? .incrHits : .incrMisses)
        case .decr: counters.add(isNumber ? .decrHits : .decrMisses)
        case .touch: counters.add(starts("TOUCHED") ? .touchHits : .touchMisses)
        case .cas:
            if starts("STORED") { counters.add(.casHits) } else if starts("EXISTS") { counters.add(.casBadval) } else { counters.add(.casMisses) }
        default: break
        }
    }

    // flush_all goes to every live node; OK once all of them said OK.
    func sendFlushAll() {
        guard let topology else { return }
        outstanding = 0
        for node in topology.nodes {
            guard let backend = worker.backend(for: node, session: session) else { continue }
            outstanding += 1
            send(to: backend, position: 0, changesData: true, shape: shape) { output in
                output.append(wire.readableBytes)
            }
        }
        if outstanding == 0 { complete(line: "SERVER_ERROR no live node") }
    }

    func flushReceived(_ unit: Response, _ bytes: UnsafeRawBufferPointer) {
        outstanding -= 1
        if unit.kind != .ok && answers.isEmpty { answers.append(bytes) }
        if outstanding == 0 { finishFlush() }
    }

    func flushFailed() {
        outstanding -= 1
        if answers.isEmpty { answers.append("SERVER_ERROR flush_all did not reach every node\r\n") }
        if outstanding == 0 { finishFlush() }
    }

    private func finishFlush() {
        reply.removeAll()
        if answers.isEmpty { reply.append("OK\r\n") } else { reply.append(answers.readableBytes) }
        complete()
    }
}
