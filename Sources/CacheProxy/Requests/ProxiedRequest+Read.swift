import Buffers
import MemcacheProtocol

// Reads go to one replica at a time, primary first: on an error, a timeout or a
// node that is down the next live replica answers instead, so a failed node
// costs the client nothing but a little latency.
extension ProxiedRequest {
    /// Sends the request to the live replica at `attempt` or later; when none is
    /// left, answers with an error.
    func sendRead() {
        guard let topology else { return }
        while let position = topology.nextLive(in: route.reads, from: attempt) {
            attempt = position
            if let backend = worker.backend(for: topology.node(at: position, of: route.reads), session: session) {
                if attempt > 0 { worker.counters.add(.readFallbacks) }
                send(to: backend, position: attempt, shape: shape) { output in
                    output.append(wire.readableBytes)
                }
                return
            }
            attempt += 1
        }
        worker.counters.add(.unavailable)
        complete(line: "SERVER_ERROR no live node holds this key")
    }

    func readReceived(_ unit: Response, _ bytes: UnsafeRawBufferPointer, last: Bool, node: BackendNode) {
        if unit.kind == .value { valuesSeen += 1 }
        // A quiet request's reply ends with the MN the proxy asked for; the
        // client did not ask for it.
        let endsQuiet = shape == .quietMeta && last
        if !endsQuiet && !overBudget {
            if hold(bytes.count) { reply.append(bytes) } else { overBudget = true }
        }
        guard last else { return }
        if overBudget {
            // memcached's answer when it cannot hold a get's reply.
            return complete(line: "SERVER_ERROR out of memory writing get response")
        }
        let miss: Bool
        switch shape {
        case .retrieval: miss = unit.kind == .end && valuesSeen == 0
        // mg q: the node hid the miss, so nothing came before MN.
        case .quietMeta: miss = command == .metaGet && reply.isEmpty
        default: miss = unit.kind == .metaMiss
        }
        if miss && !retriedMiss && retryMiss(at: node) { return }
        let failed = unit.kind == .error || unit.kind == .clientError || unit.kind == .serverError
        let hit = !miss && !failed
        if command == .gat || command == .gats {
            worker.counters.add(hit ? .touchHits : .touchMisses)
        } else if shape == .retrieval || command == .metaGet {
            worker.counters.add(hit ? .getHits : .getMisses)
        }
        if hit, let exptime = touchExptime, let topology {
            ReplicaCopy.touch(keyBytes, base64: keyIsBase64, exptime: exptime, nodes: route.writes, topology: topology,
                              except: topology.nodes[route.reads[attempt]], worker: worker)
        }
        complete()
    }

    func readFailed() {
        reply.removeAll()
        overBudget = false
        valuesSeen = 0
        attempt += 1
        sendRead()
    }

    /// A miss at `node` may not be the last word: during a membership change
    /// the key's previous owners may still hold it, a node that came back empty
    /// refills from the next replica, and with miss_failover a replica may hold it.
    private func retryMiss(at node: BackendNode) -> Bool {
        guard let topology else { return false }
        retriedMiss = true
        if let plan = KeyMigration.plan(for: route, topology: topology, now: worker.now, missedAt: node),
           migrate(plan, then: { proxied in
               proxied.reply.removeAll()
               proxied.valuesSeen = 0
               proxied.attempt = 0
               proxied.sendRead()
           }) {
            return true
        }
        guard topology.configuration.missFailover, topology.nextLive(in: route.reads, from: attempt + 1) != nil else {
            return false
        }
        worker.counters.add(.missFailovers)
        reply.removeAll()
        valuesSeen = 0
        attempt += 1
        sendRead()
        return true
    }

    /// Copies the key as `plan` says, then continues with `next` if this
    /// request is still waiting for it. A key not found continues too: the
    /// request then meets the key as absent, which it is. False when the copy
    /// cannot start.
    func migrate(_ plan: (sources: [BackendNode], targets: [BackendNode]),
                 then next: @escaping (ProxiedRequest) -> Void) -> Bool {
        guard let topology else { return false }
        let expected = tag(position: 0)
        let started = KeyMigration.start(key: keyBytes, base64: keyIsBase64, stripe: KeyFence.stripe(of: placementKey),
                                         plan: plan, topology: topology, worker: worker) { [self] _ in
            guard isCurrent(expected), !isComplete else { return }
            next(self)
        }
        if started { session?.hold(until: self) }
        return started
    }
}
