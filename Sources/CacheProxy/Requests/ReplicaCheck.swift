import Buffers
import MemcacheProtocol

/// After a write, reads the key back from every replica it went to and, when
/// their copies differ for longer than a write can take to land, makes them
/// agree with the copy readers see (the first live replica's). It is how
/// concurrent writers through different proxies converge: one proxy orders its
/// own workers' writes (`KeyFence`), but nothing orders two proxies' writes
/// of one key at a node, so each replica keeps whichever landed last:
///
///   proxy 1:  set k A --> replica 1 ......... --> replica 2
///   proxy 2:  set k B ....... --> replica 1 --> replica 2 (before A)
///             replica 1 ends with B, replica 2 with A
///
/// Every write is checked once all its replicas answered (a write whose
/// client did not wait for them all, noreply or `write_policy: primary`, is
/// checked `request_timeout_ms` later). Of two writes whose
/// copies end up differing, at least one is checked after the other landed
/// where it landed last, and sees the difference: if A's check reads
/// replica 2 after B landed there, A sees A at replica 1 and B at replica 2;
/// otherwise B landed at replica 2 after that read, so after A had landed at
/// replica 1 for good, and B's check sees A at replica 1 and B at replica 2.
///
/// A difference may be a write still on its way (it reached one replica, not
/// yet the other), so the check reads again `request_timeout_ms` later, when
/// such a write has landed or failed (a failed write marks its node down,
/// and it is flushed before it serves again), and repairs only then, each
/// repair applying only where the copy is still the one read (by its CAS; a
/// write landing in between wins):
///
/// - a replica misses the key: every copy is deleted (`md ... C<cas>`). The
///   missing copy may be a delete that crossed a write, or one a copy of the
///   proxy's brought back at another replica; a cache may miss;
/// - otherwise a copy that differs from the first live replica's (the one
///   readers get) is replaced by it (`ms ... C<cas>`).
///
/// A repair never creates a copy, so it cannot bring back a deleted value.
/// Values are compared by their bytes and client flags; expiry times are not
/// compared. Loop thread only; one per checked write.
final class ReplicaCheck: ReplyReceiver {
    private enum Copy: Equatable {
        case pending
        /// No answer (error, timeout, lost connection): nothing to judge by.
        case unknown
        case missing
        /// Where its value sits in `values`, and what a repair needs.
        case held(value: Range<Int>, clientFlags: UInt32, exptime: Int64, cas: UInt64)
    }

    private let key: [UInt8]
    private let base64: Bool
    /// The replicas, the one readers ask first at index 0.
    private let nodes: [BackendNode]
    private unowned let worker: ProxyWorker
    private var copies: [Copy]
    private var values = ByteBuffer(capacity: 256)
    private var outstanding = 0
    /// Reads of every replica judged so far.
    private var reads = 0

    private init(key: [UInt8], base64: Bool, nodes: [BackendNode], worker: ProxyWorker) {
        self.key = key
        self.base64 = base64
        self.nodes = nodes
        self.worker = worker
        self.copies = Array(repeating: .pending, count: nodes.count)
    }

    /// Checks the replicas `proxied` wrote to, when it wrote to more than one:
    /// at once, or `request_timeout_ms` later when `awaitLanding` (its client
    /// was answered before every replica was).
    static func start(after proxied: ProxiedRequest, awaitLanding: Bool) {
        guard let topology = proxied.topology, topology.configuration.replicaCheck,
              let first = topology.nextLive(in: proxied.route.reads, from: 0) else { return }
        let reference = topology.node(at: first, of: proxied.route.reads)
        var nodes = [reference]
        for index in proxied.route.writes where topology.nodes[index] !== reference && topology.nodes[index].isUp {
            nodes.append(topology.nodes[index])
        }
        guard nodes.count > 1 else { return }
        let check = ReplicaCheck(key: Array(proxied.keyBytes), base64: proxied.keyIsBase64, nodes: nodes,
                                 worker: proxied.worker)
        proxied.worker.counters.add(.replicaChecks)
        if awaitLanding {
            proxied.worker.checkAgainLater(check)
        } else {
            check.read()
        }
    }

    private func read() {
        values.removeAll()
        outstanding = 0
        for position in nodes.indices {
            guard let backend = worker.backend(for: nodes[position], session: nil) else {
                copies[position] = .unknown
                continue
            }
            copies[position] = .pending
            outstanding += 1
            backend.send(call: self, tag: position, shape: .meta) { output in
                key.withUnsafeBytes { RequestEncoder.appendFetch($0, base64: base64, to: &output) }
            }
        }
        if outstanding == 0 { judge() }
    }

    /// Called by the worker `request_timeout_ms` after `checkAgainLater`.
    func readAgain() {
        read()
    }

    func backend(_ node: BackendNode, received unit: Response, in bytes: UnsafeRawBufferPointer, tag: Int,
                 last: Bool) -> Bool {
        guard tag < copies.count, copies[tag] == .pending else { return false }
        switch unit.kind {
        case .metaValue:
            guard let found = MetaValue(unit, in: bytes) else { return false }
            let start = values.readableCount
            values.append(UnsafeRawBufferPointer(rebasing: bytes[unit.data]))
            copies[tag] = .held(value: start..<values.readableCount, clientFlags: found.clientFlags,
                                exptime: found.exptime, cas: found.cas)
        case .metaMiss:
            copies[tag] = .missing
        default:
            copies[tag] = .unknown
        }
        answered()
        return true
    }

    func backend(_ node: BackendNode, failed failure: BackendFailure, tag: Int) {
        guard tag < copies.count, copies[tag] == .pending else { return }
        copies[tag] = .unknown
        answered()
    }

    private func answered() {
        outstanding -= 1
        if outstanding == 0 { judge() }
    }

    private func judge() {
        reads += 1
        let differing: [Int]
        if copies.contains(.missing) {
            differing = nodes.indices.filter { if case .held = copies[$0] { return true } else { return false } }
        } else {
            guard copies[0] != .unknown else { return }
            differing = nodes.indices.dropFirst().filter { differs(copies[$0], from: copies[0]) }
        }
        guard !differing.isEmpty else { return }
        // A difference is acted on only once it outlived a write on its way.
        guard reads >= 2 else {
            // The values are read again: none is held while waiting.
            values = ByteBuffer(capacity: 256)
            worker.checkAgainLater(self)
            return
        }
        for position in differing { repair(position) }
    }

    /// A replica's value is not the reference's (both are held).
    private func differs(_ copy: Copy, from reference: Copy) -> Bool {
        guard case .held(let value, let flags, _, _) = copy,
              case .held(let referenceValue, let referenceFlags, _, _) = reference else { return false }
        let bytes = values.readableBytes
        return flags != referenceFlags
            || !UnsafeRawBufferPointer(rebasing: bytes[value]).elementsEqual(UnsafeRawBufferPointer(rebasing: bytes[referenceValue]))
    }

    private func repair(_ position: Int) {
        guard case .held(_, _, _, let cas) = copies[position],
              let backend = worker.backend(for: nodes[position], session: nil) else { return }
        worker.counters.add(.replicaRepairs)
        backend.send(call: worker.discard, tag: 0, shape: .meta) { output in
            key.withUnsafeBytes { key in
                switch copies[0] {
                case .held(let value, let clientFlags, let exptime, _) where !copies.contains(.missing):
                    RequestEncoder.appendCopy(key, base64: base64,
                                              value: UnsafeRawBufferPointer(rebasing: values.readableBytes[value]),
                                              clientFlags: clientFlags, exptime: exptime, onlyIfAbsent: false,
                                              ifCas: cas, to: &output)
                default:
                    RequestEncoder.appendConditionalDelete(key, base64: base64, cas: cas, to: &output)
                }
            }
        }
    }
}
