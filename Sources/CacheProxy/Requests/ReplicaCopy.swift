import Buffers
import MemcacheProtocol

/// Copies of one key's value to replicas, made by the proxy itself: after a
/// successful compare-and-swap (to the replicas that did not take part), and
/// after a scale-out (from a key's previous owner to its new replicas).
enum ReplicaCopy {
    /// How a copy is stored.
    enum Mode {
        /// Overwrites: the copy is the newest value (a compare-and-swap's result).
        case set
        /// Only where the key is missing: a copy from an older owner must never
        /// replace a value written since.
        case add
    }

    /// A copy of `value` to every live node of `nodes` except `skipping`.
    /// Replies are awaited by `call` with tags `firstTag + position`. A copy
    /// made for a write that holds its key's `KeyFence` stripe (`fence`)
    /// holds it too, until answered. Returns how many copies were sent.
    static func send(_ mode: Mode, key: UnsafeRawBufferPointer, base64: Bool, value: UnsafeRawBufferPointer,
                     clientFlags: UInt32, exptime: Int64, nodes: ReplicaSet, topology: Topology, skipping: BackendNode?,
                     worker: ProxyWorker, call: ReplyReceiver, firstTag: Int, fence: Int = -1) -> Int {
        var sent = 0
        for position in 0..<nodes.count {
            let node = topology.nodes[nodes[position]]
            guard node !== skipping, let backend = worker.backend(for: node, session: nil) else { continue }
            sent += 1
            if fence >= 0 { worker.context.fence.extendWrite(fence, count: 1) }
            backend.send(call: call, tag: firstTag + position, shape: .meta, fence: fence) { output in
                RequestEncoder.appendCopy(key, base64: base64, value: value, clientFlags: clientFlags, exptime: exptime,
                                          onlyIfAbsent: mode == .add, to: &output)
            }
        }
        return sent
    }

    /// Sets `key`'s expiry to `exptime` at every live node of `nodes` but
    /// `answered`, which a `gat` or `mg ... T` already touched: the copies of a
    /// key expire together, whichever replica served the read.
    static func touch(_ key: UnsafeRawBufferPointer, base64: Bool, exptime: Int64, nodes: ReplicaSet,
                      topology: Topology, except answered: BackendNode, worker: ProxyWorker) {
        for index in nodes where topology.nodes[index] !== answered {
            worker.backend(for: topology.nodes[index], session: nil)?
                .send(call: worker.discard, tag: 0, shape: .meta) { output in
                    RequestEncoder.appendTouchCopy(key, base64: base64, exptime: exptime, to: &output)
                }
        }
    }

    /// Deletes `key` at `node`, a copy the proxy no longer wants there (a key
    /// moved away from its old owner, a value too large to store). A delete
    /// that fails marks the node down like any missed write.
    static func delete(_ key: UnsafeRawBufferPointer, base64: Bool, at node: BackendNode, worker: ProxyWorker,
                       session: ClientSession?) {
        worker.backend(for: node, session: session)?.send(call: worker.discard, tag: 0, shape: .meta) { output in
            RequestEncoder.appendMetaDelete(key, base64: base64, to: &output)
        }
    }

    /// Deletes `key` at `node` only if its copy there still has `cas` (one the
    /// proxy made and must take back; a value written since stays).
    static func delete(_ key: UnsafeRawBufferPointer, base64: Bool, at node: BackendNode, ifCas cas: UInt64,
                       worker: ProxyWorker) {
        worker.backend(for: node, session: nil)?.send(call: worker.discard, tag: 0, shape: .meta) { output in
            RequestEncoder.appendConditionalDelete(key, base64: base64, cas: cas, to: &output)
        }
    }
}

/// After a compare-and-swap succeeded on one replica, the others get the new
/// value as a plain set: their CAS uniques differ, so a cas would fail there.
/// During a membership change the others include the key's other owners. The
/// copies hold the key's `KeyFence` stripe as the compare-and-swap did, so a
/// write of the key from another worker reaches every replica after them.
enum CompareAndSwapCopy {
    static func copy(from proxied: ProxiedRequest, casNode: BackendNode) {
        guard let topology = proxied.topology else { return }
        let worker = proxied.worker!
        for index in proxied.route.invalidations {
            ReplicaCopy.delete(proxied.keyBytes, base64: proxied.keyIsBase64, at: topology.nodes[index], worker: worker,
                               session: nil)
        }
        guard proxied.route.writes.count > 1 else { return }
        if proxied.copy.readBack {
            ReadBackCopy.start(proxied: proxied, casNode: casNode)
            return
        }
        let value = UnsafeRawBufferPointer(rebasing: proxied.wire.readableBytes[proxied.copy.data])
        _ = ReplicaCopy.send(.set, key: proxied.keyBytes, base64: proxied.keyIsBase64, value: value,
                             clientFlags: proxied.copy.clientFlags, exptime: proxied.copy.exptime,
                             nodes: proxied.route.writes, topology: topology, skipping: casNode, worker: worker,
                             call: worker.discard, firstTag: 0, fence: proxied.fenceStripe)
    }
}

/// `ms ... MA C<cas>` (append with a CAS): only the node knows the appended
/// result, so it is read back (`mg <key> v f t`) and then set on the others.
final class ReadBackCopy: ReplyReceiver {
    private let key: [UInt8]
    private let base64: Bool
    private let nodes: ReplicaSet
    private let topology: Topology
    private let casNode: BackendNode
    private let fence: Int
    private unowned let worker: ProxyWorker

    private init(key: [UInt8], base64: Bool, nodes: ReplicaSet, topology: Topology, casNode: BackendNode,
                 fence: Int, worker: ProxyWorker) {
        self.key = key
        self.base64 = base64
        self.nodes = nodes
        self.topology = topology
        self.casNode = casNode
        self.fence = fence
        self.worker = worker
    }

    static func start(proxied: ProxiedRequest, casNode: BackendNode) {
        guard let topology = proxied.topology, let backend = proxied.worker.backend(for: casNode, session: nil) else { return }
        let call = ReadBackCopy(key: Array(proxied.keyBytes), base64: proxied.keyIsBase64, nodes: proxied.route.writes,
                                topology: topology, casNode: casNode, fence: proxied.fenceStripe, worker: proxied.worker)
        if call.fence >= 0 { proxied.worker.context.fence.extendWrite(call.fence, count: 1) }
        backend.send(call: call, tag: 0, shape: .meta, fence: call.fence) { output in
            call.key.withUnsafeBytes { RequestEncoder.appendFetch($0, base64: call.base64, to: &output) }
        }
    }

    func backend(_ node: BackendNode, received unit: Response, in bytes: UnsafeRawBufferPointer, tag: Int,
                 last: Bool) -> Bool {
        guard unit.kind == .metaValue, let found = MetaValue(unit, in: bytes) else { return true }
        key.withUnsafeBytes { key in
            _ = ReplicaCopy.send(.set, key: key, base64: base64, value: UnsafeRawBufferPointer(rebasing: bytes[unit.data]),
                                 clientFlags: found.clientFlags, exptime: found.exptime, nodes: nodes,
                                 topology: topology, skipping: casNode, worker: worker, call: worker.discard,
                                 firstTag: 0, fence: fence)
        }
        return true
    }

    func backend(_ node: BackendNode, failed failure: BackendFailure, tag: Int) {}
}

/// The client flags, remaining TTL and CAS of a `VA <len> f<flags> t<ttl> c<cas>`
/// reply, the TTL as exptime to store them with (0 = never expires).
struct MetaValue {
    var clientFlags: UInt32 = 0
    var exptime: Int64 = 0
    var cas: UInt64 = 0

    /// The `c<cas>` of a meta reply, if it has one.
    static func cas(of unit: Response, in bytes: UnsafeRawBufferPointer) -> UInt64? {
        for token in KeyTokens(bytes, unit.metaFlags) where token.count >= 2 && bytes[token.lowerBound] == UInt8(ascii: "c") {
            return MemcachedNumber.uint64(bytes, (token.lowerBound + 1)..<token.upperBound)
        }
        return nil
    }

    init?(_ unit: Response, in bytes: UnsafeRawBufferPointer) {
        for token in KeyTokens(bytes, unit.metaFlags) where token.count >= 2 {
            let digits = (token.lowerBound + 1)..<token.upperBound
            switch bytes[token.lowerBound] {
            case UInt8(ascii: "f"):
                guard let flags = MemcachedNumber.uint32(bytes, digits) else { return nil }
                clientFlags = flags
            case UInt8(ascii: "t"):
                guard let ttl = MemcachedNumber.int32(bytes, digits) else { return nil }
                // -1: never expires. A TTL that ran out in between stays expired.
                exptime = ttl < 0 ? 0 : max(Int64(ttl), 1)
            case UInt8(ascii: "c"):
                guard let value = MemcachedNumber.uint64(bytes, digits) else { return nil }
                cas = value
            default:
                break
            }
        }
    }
}
