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

    /// A copy of `value` to every live replica of `key` except the one at
    /// `skipping` (pass -1 to skip none). Replies are awaited by `call` with
    /// tags `firstTag + position`. Returns how many copies were sent.
    static func send(_ mode: Mode, key: UnsafeRawBufferPointer, base64: Bool, value: UnsafeRawBufferPointer,
                     clientFlags: UInt32, exptime: Int64, replicas: ReplicaSet, topology: Topology, skipping: Int,
                     worker: ProxyWorker, call: ReplyReceiver, firstTag: Int) -> Int {
        var sent = 0
        for position in 0..<replicas.count where position != skipping {
            let node = topology.nodes[replicas[position]]
            guard let backend = worker.backend(for: node, session: nil) else { continue }
            sent += 1
            backend.send(call: call, tag: firstTag + position, shape: .meta) { output in
                RequestEncoder.appendCopy(key, base64: base64, value: value, clientFlags: clientFlags, exptime: exptime,
                                          onlyIfAbsent: mode == .add, to: &output)
            }
        }
        return sent
    }

    /// Sets `key`'s expiry to `exptime` at every live replica but the one at
    /// `answered`, which a `gat` or `mg ... T` already touched: the copies of a
    /// key expire together, whichever replica served the read.
    static func touch(_ key: UnsafeRawBufferPointer, base64: Bool, exptime: Int64, replicas: ReplicaSet,
                      topology: Topology, except answered: Int, worker: ProxyWorker) {
        for position in 0..<replicas.count where position != answered {
            worker.backend(for: topology.nodes[replicas[position]], session: nil)?
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
}

/// After a compare-and-swap succeeded on one replica, the others get the new
/// value as a plain set: their CAS uniques differ, so a cas would fail there.
enum CompareAndSwapCopy {
    static func copy(from proxied: ProxiedRequest, except position: Int) {
        guard let topology = proxied.topology, proxied.replicas.count > 1 else { return }
        let worker = proxied.worker!
        if proxied.copy.readBack {
            ReadBackCopy.start(proxied: proxied, casNode: topology.nodes[proxied.replicas[position]], skipping: position)
            return
        }
        let value = UnsafeRawBufferPointer(rebasing: proxied.wire.readableBytes[proxied.copy.data])
        _ = ReplicaCopy.send(.set, key: proxied.keyBytes, base64: proxied.keyIsBase64, value: value,
                             clientFlags: proxied.copy.clientFlags,
                                exptime: proxied.copy.exptime, replicas: proxied.replicas, topology: topology,
                                skipping: position, worker: worker, call: worker.discard, firstTag: 0)
    }
}

/// `ms ... MA C<cas>` (append with a CAS): only the node knows the appended
/// result, so it is read back (`mg <key> v f t`) and then set on the others.
final class ReadBackCopy: ReplyReceiver {
    private let key: [UInt8]
    private let base64: Bool
    private let replicas: ReplicaSet
    private let topology: Topology
    private let skipping: Int
    private unowned let worker: ProxyWorker

    private init(key: [UInt8], base64: Bool, replicas: ReplicaSet, topology: Topology, skipping: Int, worker: ProxyWorker) {
        self.key = key
        self.base64 = base64
        self.replicas = replicas
        self.topology = topology
        self.skipping = skipping
        self.worker = worker
    }

    static func start(proxied: ProxiedRequest, casNode: BackendNode, skipping: Int) {
        guard let topology = proxied.topology, let backend = proxied.worker.backend(for: casNode, session: nil) else { return }
        let call = ReadBackCopy(key: Array(proxied.keyBytes), base64: proxied.keyIsBase64, replicas: proxied.replicas,
                                topology: topology, skipping: skipping, worker: proxied.worker)
        backend.send(call: call, tag: 0, shape: .meta) { output in
            call.key.withUnsafeBytes { RequestEncoder.appendFetch($0, base64: call.base64, to: &output) }
        }
    }

    func backend(_ node: BackendNode, received unit: Response, in bytes: UnsafeRawBufferPointer, tag: Int,
                 last: Bool) -> Bool {
        guard unit.kind == .metaValue, let found = MetaValue(unit, in: bytes) else { return true }
        key.withUnsafeBytes { key in
            _ = ReplicaCopy.send(.set, key: key, base64: base64, value: UnsafeRawBufferPointer(rebasing: bytes[unit.data]),
                                    clientFlags: found.clientFlags, exptime: found.exptime, replicas: replicas,
                                    topology: topology, skipping: skipping, worker: worker, call: worker.discard,
                                    firstTag: 0)
        }
        return true
    }

    func backend(_ node: BackendNode, failed failure: BackendFailure, tag: Int) {}
}

/// The client flags and remaining TTL of a `VA <len> f<flags> t<ttl>` reply, as
/// exptime to store them with (0 = never expires).
struct MetaValue {
    var clientFlags: UInt32 = 0
    var exptime: Int64 = 0

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
            default:
                break
            }
        }
    }
}
