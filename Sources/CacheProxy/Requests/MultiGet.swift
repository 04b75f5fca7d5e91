import Buffers
import MemcacheProtocol

/// A get of many keys, split by node: each node gets one request with all of
/// its keys (never one request per key, and a key named twice is asked for
/// once), the nodes answer in parallel, and the values are put back in the
/// order the client asked for them under one `END`. A node that fails has its
/// unanswered keys sent again to their next replica.
///
///   get a b c a --> node1: get a c    node2: get b        (sent together)
///               <-- VALUE a, VALUE c, END    VALUE b, END
///               --> VALUE a, VALUE b, VALUE c, VALUE a, END   (request order)
///
/// The reply is written to the client as its socket drains (`ReplyStream`),
/// so naming one large key many times costs the proxy that value once.
final class MultiGet: ReplyStream {
    /// The request this serves; nil once it completed or its session closed,
    /// which ends every round still under way.
    private var proxied: ProxiedRequest?
    /// Each key's bytes inside `proxied.wire`.
    private let keys: [Range<Int>]
    /// For each key, the first key with the same bytes: only those are asked for.
    private let canonical: [Int]
    private let distinctKeys: Int
    /// Each key's nodes (`route.reads` asked in order).
    private var routes: [KeyRoute] = []
    /// The replica position each key is being asked at.
    private var attempts: [Int] = []
    /// Where each key's VALUE unit sits in `values`, once it came.
    private var found: [Range<Int>?] = []
    private var values = ByteBuffer(capacity: 1024)
    /// One per request sent: which keys went to which node, and how far its
    /// reply has come. Its index is the low bits of the call's tag.
    private var batches: [Batch] = []
    private var outstanding = 0
    /// The command and, for gat/gats, the exptime: `get `, `gats 300 `.
    private let prefix: Range<Int>
    private var unavailableKeys = 0
    /// The values came to more than the client may have waiting in the proxy.
    private var overBudget = false
    /// Keys missed in the first round are moved from where they still are (see
    /// KeyMigration) once, then asked for again.
    private var migrationDone = false
    /// With miss_failover, keys still missing are asked of their next replica once.
    private var missFailoverDone = false
    private var migrationsPending = 0
    private var migrated: [Int] = []
    /// Writing the reply: the next key to write, and whether END is written.
    private var nextToWrite = 0
    private var endWritten = false

    private struct Batch {
        let node: BackendNode
        var keyIndices: [Int]
        var cursor = 0
    }

    /// `prefix` is the bytes in `proxied.wire` each node's request starts with;
    /// `keys` the key ranges in `proxied.wire`.
    init(proxied: ProxiedRequest, prefix: Range<Int>, keys: [Range<Int>]) {
        self.proxied = proxied
        self.prefix = prefix
        self.keys = keys
        let bytes = proxied.wire.readableBytes
        let canonical = MultiGet.firstOccurrences(of: keys, in: bytes)
        self.canonical = canonical
        var distinct = 0
        for index in canonical.indices where canonical[index] == index { distinct += 1 }
        distinctKeys = distinct
        let topology = proxied.topology!
        let now = proxied.worker.now
        routes = keys.map { topology.route(of: UnsafeRawBufferPointer(rebasing: bytes[$0]), now: now) }
        attempts = Array(repeating: 0, count: keys.count)
        found = Array(repeating: nil, count: keys.count)
    }

    /// For each key, the index of the first key with the same bytes. A few
    /// keys are compared pairwise (no allocation but the result); many go
    /// through a table of hashes.
    static func firstOccurrences(of keys: [Range<Int>], in bytes: UnsafeRawBufferPointer) -> [Int] {
        var canonical = Array(0..<keys.count)
        func key(_ index: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[keys[index]]) }
        if keys.count <= 32 {
            for index in 1..<max(keys.count, 1) {
                for earlier in 0..<index where canonical[earlier] == earlier && keys[earlier].count == keys[index].count
                    && key(earlier).sameBytes(as: key(index)) {
                    canonical[index] = earlier
                    break
                }
            }
            return canonical
        }
        var firstWithHash: [Int: Int] = [:]
        for index in keys.indices {
            var hasher = Hasher()
            hasher.combine(bytes: key(index))
            let hash = hasher.finalize()
            if let first = firstWithHash[hash] {
                // Two different keys with one hash are both asked for.
                if key(first).sameBytes(as: key(index)) { canonical[index] = first }
            } else {
                firstWithHash[hash] = index
            }
        }
        return canonical
    }

    /// Sends the first round: every distinct key to its first live replica.
    func start() {
        send((0..<keys.count).filter { canonical[$0] == $0 })
        finishIfDone()
    }

    /// The request is done with this multi-get (completed or abandoned).
    func cancel() { proxied = nil }

    /// A key's bytes; only while the request is held.
    private func key(_ index: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: proxied!.wire.readableBytes[keys[index]])
    }

    /// Groups `keyIndices` by the node each is to be asked at and sends one
    /// request per node.
    private func send(_ keyIndices: [Int]) {
        guard let proxied, let topology = proxied.topology else { return }
        var byNode: [ObjectIdentifier: Int] = [:]
        var firstNewBatch = batches.count
        for index in keyIndices {
            guard let position = topology.nextLive(in: routes[index].reads, from: attempts[index]) else {
                attempts[index] = routes[index].reads.count
                unavailableKeys += 1
                continue
            }
            attempts[index] = position
            let node = topology.node(at: position, of: routes[index].reads)
            if attempts[index] > 0 { proxied.worker.counters.add(.readFallbacks) }
            if let batch = byNode[ObjectIdentifier(node)] {
                batches[batch].keyIndices.append(index)
            } else {
                byNode[ObjectIdentifier(node)] = batches.count
                batches.append(Batch(node: node, keyIndices: [index]))
            }
        }
        let request = proxied.wire.readableBytes
        while firstNewBatch < batches.count {
            let batchIndex = firstNewBatch
            firstNewBatch += 1
            let batch = batches[batchIndex]
            guard batchIndex < ProxiedRequest.positionLimit, let backend = proxied.worker.backend(for: batch.node, session: proxied.session, lane: .bulk) else {
                failBatch(batchIndex)
                continue
            }
            outstanding += 1
            proxied.send(to: backend, position: batchIndex, lane: .bulk, shape: .retrieval) { output in
                output.append(UnsafeRawBufferPointer(rebasing: request[prefix]))
                for (position, index) in batch.keyIndices.enumerated() {
                    if position > 0 { output.append(byte: UInt8(ascii: " ")) }
                    output.append(UnsafeRawBufferPointer(rebasing: request[keys[index]]))
                }
                output.append("\r\n")
            }
        }
    }

    /// One unit of a batch's reply. False when it cannot belong to the batch:
    /// a VALUE for a key it did not ask for, or out of order.
    func received(_ unit: Response, in bytes: UnsafeRawBufferPointer, tag: Int, last: Bool) -> Bool {
        let batchIndex = ProxiedRequest.position(of: tag)
        guard batchIndex < batches.count else { return false }
        if unit.kind == .value {
            let key = UnsafeRawBufferPointer(rebasing: bytes[unit.key])
            var batch = batches[batchIndex]
            // Nodes answer hits in the order asked, skipping misses.
            var matched = false
            while batch.cursor < batch.keyIndices.count {
                let index = batch.keyIndices[batch.cursor]
                batch.cursor += 1
                if self.key(index).sameBytes(as: key) {
                    matched = true
                    if !overBudget, proxied?.hold(unit.length) == true {
                        let start = values.readableCount
                        values.append(UnsafeRawBufferPointer(rebasing: bytes[0..<unit.length]))
                        found[index] = start..<values.readableCount
                    } else {
                        overBudget = true
                    }
                    break
                }
            }
            batches[batchIndex] = batch
            if !matched { return false }
        } else if unit.kind != .end {
            // An error for the whole batch: ask the next replica for its keys.
            failed(tag: tag)
            return true
        }
        guard last else { return true }
        outstanding -= 1
        finishIfDone()
        return true
    }

    func failed(tag: Int) {
        let batchIndex = ProxiedRequest.position(of: tag)
        guard batchIndex < batches.count else { return }
        outstanding -= 1
        failBatch(batchIndex)
        finishIfDone()
    }

    /// Sends a failed batch's unanswered keys to their next replicas.
    private func failBatch(_ batchIndex: Int) {
        var retry: [Int] = []
        for index in batches[batchIndex].keyIndices where found[index] == nil {
            attempts[index] += 1
            retry.append(index)
        }
        batches[batchIndex].keyIndices.removeAll()
        if !retry.isEmpty { send(retry) }
    }

    /// Copies every missed key that has a source (its previous owners during
    /// a membership change, a replica of a node refilling after its return);
    /// true when some are under way.
    private func startMigrations() -> Bool {
        guard let proxied, let topology = proxied.topology else { return false }
        let now = proxied.worker.now
        for index in 0..<keys.count where canonical[index] == index && found[index] == nil {
            let key = self.key(index)
            let reads = routes[index].reads
            let missedAt = attempts[index] < reads.count ? topology.node(at: attempts[index], of: reads) : nil
            guard let plan = KeyMigration.plan(for: routes[index], topology: topology, now: now, missedAt: missedAt)
            else { continue }
            let started = KeyMigration.start(key: key, base64: false, stripe: KeyFence.stripe(of: key), plan: plan,
                                             topology: topology, worker: proxied.worker) { [self] wasFound in
                // The session may have closed meanwhile: then `proxied` is nil.
                guard self.proxied != nil else { return }
                if wasFound { migrated.append(index) }
                migrationsPending -= 1
                if migrationsPending == 0 { askAgainForMigrated() }
            }
            if started { migrationsPending += 1 }
        }
        return migrationsPending > 0
    }

    /// miss_failover: every key still missing is asked of its next live replica.
    private func retryMissesOnReplicas() -> Bool {
        guard let proxied, let topology = proxied.topology, topology.configuration.missFailover else { return false }
        var retry: [Int] = []
        for index in 0..<keys.count where canonical[index] == index && found[index] == nil {
            // A miss stays a miss when no other replica is up to ask.
            guard let next = topology.nextLive(in: routes[index].reads, from: attempts[index] + 1) else { continue }
            attempts[index] = next
            retry.append(index)
        }
        guard !retry.isEmpty else { return false }
        proxied.worker.counters.add(.missFailovers, UInt64(retry.count))
        send(retry)
        return outstanding > 0
    }

    /// The second round: the keys just moved, from their owners.
    private func askAgainForMigrated() {
        for index in migrated { attempts[index] = 0 }
        if !migrated.isEmpty { send(migrated) }
        finishIfDone()
    }

    private func finishIfDone() {
        guard outstanding == 0, migrationsPending == 0, let proxied, !proxied.isComplete else { return }
        if overBudget {
            // memcached's answer when it cannot hold a get's reply.
            proxied.complete(line: "SERVER_ERROR out of memory writing get response")
            return
        }
        if !migrationDone {
            migrationDone = true
            if startMigrations() { return }
        }
        if !missFailoverDone {
            missFailoverDone = true
            if retryMissesOnReplicas() { return }
        }
        let counters = proxied.worker.counters
        var hits = 0
        for index in 0..<keys.count where found[canonical[index]] != nil { hits += 1 }
        let touching = proxied.touchExptime != nil
        counters.add(touching ? .touchHits : .getHits, UInt64(hits))
        counters.add(touching ? .touchMisses : .getMisses, UInt64(keys.count - hits))
        if let exptime = proxied.touchExptime, let topology = proxied.topology {
            // gat: the replicas that did not serve a key get its new expiry too.
            for index in 0..<keys.count where canonical[index] == index && found[index] != nil {
                ReplicaCopy.touch(key(index), base64: false, exptime: exptime, nodes: routes[index].writes,
                                  topology: topology, except: topology.node(at: attempts[index], of: routes[index].reads),
                                  worker: proxied.worker)
            }
        }
        if unavailableKeys > 0 { counters.add(.unavailable) }
        if unavailableKeys > 0 && unavailableKeys == distinctKeys {
            proxied.complete(line: "SERVER_ERROR no live node holds these keys")
            return
        }
        proxied.reply.removeAll()
        proxied.stream = self
        proxied.complete()
    }

    // MARK: ReplyStream

    func write(into output: inout ByteBuffer, until limit: Int) -> Bool {
        let bytes = values.readableBytes
        while nextToWrite < keys.count {
            if output.readableCount >= limit { return false }
            if let range = found[canonical[nextToWrite]] {
                output.append(UnsafeRawBufferPointer(rebasing: bytes[range]))
            }
            nextToWrite += 1
        }
        if !endWritten {
            output.append("END\r\n")
            endWritten = true
        }
        return true
    }
}
