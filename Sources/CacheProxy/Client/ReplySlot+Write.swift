import Glibc
import Buffers
import MemcacheProtocol

// Writes go to every live replica at once. The client gets the answer of the
// first replica in ring order that gave one (the primary's, unless it failed):
// with write_policy `all` once every replica has answered, with `primary` as
// soon as that first answer is in.
extension ReplySlot {
    /// Sends the request to every live replica.
    func sendWrite() {
        guard let topology else { return }
        outstanding = 0
        for position in 0..<replicas.count {
            let node = topology.nodes[replicas[position]]
            guard let backend = worker.backend(for: node, session: session) else {
                positions.append(.notSent)
                continue
            }
            positions.append(.pending)
            outstanding += 1
            send(to: backend, position: position, changesData: true, shape: shape) { output in
                output.append(request.readableBytes)
            }
        }
        if outstanding < replicas.count { worker.counters.add(.degradedWrites) }
        if outstanding == 0 {
            worker.counters.add(.unavailable)
            complete(line: "SERVER_ERROR no live node holds this key")
        }
    }

    /// Sends a compare-and-swap to the first live replica only: CAS uniques
    /// differ between replicas, so only the node whose `gets` the client saw can
    /// judge it. A success is then copied to the others (`copyToOtherReplicas`).
    func sendCompareAndSwap() {
        guard let topology else { return }
        for position in 0..<replicas.count {
            let node = topology.nodes[replicas[position]]
            if let backend = worker.backend(for: node, session: session) {
                while positions.count < position { positions.append(.notSent) }
                positions.append(.pending)
                outstanding = 1
                send(to: backend, position: position, changesData: true, shape: shape) { output in
                    output.append(request.readableBytes)
                }
                return
            }
        }
        worker.counters.add(.unavailable)
        complete(line: "SERVER_ERROR no live node holds this key")
    }

    /// One unit of a replica's answer. False when it cannot belong to it.
    func writeReceived(_ unit: Response, _ bytes: UnsafeRawBufferPointer, position: Int, last: Bool,
                       node: BackendNode) -> Bool {
        guard position < positions.count else { return true }
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
        if case .compareAndSwap = work, succeeded {
            CompareAndSwapCopy.copy(from: self, except: position)
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
        for state in positions {
            switch state {
            case .notSent, .failed:
                continue
            case .pending, .heard:
                return
            case .answered(let range):
                return completeWithAnswer(range)
            }
        }
        if outstanding == 0 {
            worker.counters.add(.unavailable)
            complete(line: "SERVER_ERROR write failed on every replica")
        }
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
                output.append(request.readableBytes)
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
