import Buffers
import MemcacheProtocol

/// Moves one key's value to where it belongs now, so neither a scale-out nor a
/// node that came back empty costs a miss or an odd answer.
///
/// After nodes are added, a key whose owner changed is still on its previous
/// owner; after a node is flushed on its return, its keys are still on their
/// next replica. Before such a key is read (on a miss) or changed (before a
/// command that depends on the stored value), the proxy asks the source
/// (`mg <key> v f t`: value, flags, remaining TTL) and copies a hit to the
/// key's replicas with `ms ... ME` (add), keeping flags and TTL; an add never replaces a
/// value written since. After a scale-out the source, when it no longer holds
/// a replica of the key, then drops its copy, so a later delete cannot be
/// undone by another migration.
///
///   mg at source --hit--> add on every live replica --> delete at old owner (scale-out) --> done(found)
///                '-miss/failure--> done(not found)
final class KeyMigration: ReplyReceiver {
    private let key: [UInt8]
    /// The key travels in base64 (meta `b`), as the client sent it.
    private let base64: Bool
    private let source: BackendNode
    private let dropSource: Bool
    private let replicas: ReplicaSet
    private let topology: Topology
    private unowned let worker: ProxyWorker
    private var completion: ((Bool) -> Void)?
    private var copiesPending = 0
    /// The `KeyFence` stripe held from the read to the last copy's answer.
    private let stripe: Int
    /// `flush_all` requests routed when the move started.
    private let flushesAtStart: Int

    /// Where a key must be fetched from before it is read or changed, if anywhere.
    struct Source {
        let node: BackendNode
        /// The old owner keeps no replica of the key any more.
        let dropAfterCopy: Bool
    }

    /// The source for `key`, whose replicas are `replicas` in `topology`: its
    /// previous owner during a warm-up, or the next live replica when the first
    /// live one came back empty and is refilling.
    static func source(for key: UnsafeRawBufferPointer, replicas: ReplicaSet, topology: Topology, now: Int64) -> Source? {
        guard let primaryPosition = topology.nextLive(in: replicas, from: 0) else { return nil }
        let primary = topology.node(at: primaryPosition, of: replicas)
        if let previous = topology.previousOwner(of: key, currentOwner: primary, now: now) {
            let stillReplica = replicas.contains { topology.nodes[$0] === previous }
            return Source(node: previous, dropAfterCopy: !stillReplica)
        }
        if primary.isRefilling(now: now), let position = topology.nextLive(in: replicas, from: primaryPosition + 1) {
            return Source(node: topology.node(at: position, of: replicas), dropAfterCopy: false)
        }
        return nil
    }

    private init(key: UnsafeRawBufferPointer, base64: Bool, stripe: Int, source: Source, replicas: ReplicaSet,
                 topology: Topology, worker: ProxyWorker, completion: @escaping (Bool) -> Void) {
        self.key = Array(key)
        self.stripe = stripe
        self.flushesAtStart = worker.context.fence.flushes.load(ordering: .acquiring)
        self.base64 = base64
        self.source = source.node
        self.dropSource = source.dropAfterCopy
        self.replicas = replicas
        self.topology = topology
        self.worker = worker
        self.completion = completion
    }

    /// Starts moving `key` (whose `KeyFence` stripe is `stripe`); `completion(found)`
    /// runs once it is in place (or was not found). False, with no completion,
    /// when the source cannot be reached or a write of the key is under way (the
    /// request then meets the key as it is where it belongs now).
    @discardableResult
    static func start(key: UnsafeRawBufferPointer, base64: Bool, stripe: Int, from source: Source, replicas: ReplicaSet,
                      topology: Topology, worker: ProxyWorker, completion: @escaping (Bool) -> Void) -> Bool {
        guard let backend = worker.backend(for: source.node, session: nil) else { return false }
        guard worker.context.fence.tryEnterCopy(stripe) else {
            worker.counters.add(.warmupSkips)
            return false
        }
        let migration = KeyMigration(key: key, base64: base64, stripe: stripe, source: source, replicas: replicas,
                                     topology: topology, worker: worker, completion: completion)
        backend.send(call: migration, tag: 0, shape: .meta) { output in
            RequestEncoder.appendFetch(key, base64: base64, to: &output)
        }
        return true
    }

    func backend(_ node: BackendNode, received unit: Response, in bytes: UnsafeRawBufferPointer, tag: Int,
                 last: Bool) -> Bool {
        if tag > 0 {
            copyAnswered()
            return true
        }
        guard unit.kind == .metaValue, let found = MetaValue(unit, in: bytes) else {
            finish(found: false)
            return true
        }
        copiesPending = key.withUnsafeBytes { key in
            ReplicaCopy.send(.add, key: key, base64: base64, value: UnsafeRawBufferPointer(rebasing: bytes[unit.data]),
                             clientFlags: found.clientFlags, exptime: found.exptime, replicas: replicas,
                             topology: topology, skipping: -1, worker: worker, call: self, firstTag: 1)
        }
        if copiesPending == 0 { finish(found: false) }
        return true
    }

    func backend(_ node: BackendNode, failed failure: BackendFailure, tag: Int) {
        if tag > 0 { return copyAnswered() }
        finish(found: false)
    }

    private func copyAnswered() {
        copiesPending -= 1
        guard copiesPending == 0 else { return }
        if dropSource {
            key.withUnsafeBytes { ReplicaCopy.delete($0, base64: base64, at: source, worker: worker, session: nil) }
        }
        worker.counters.add(.warmupHits)
        finish(found: true)
    }

    private func finish(found: Bool) {
        guard let completion else { return }
        self.completion = nil
        if found && worker.context.fence.flushes.load(ordering: .acquiring) != flushesAtStart {
            // A flush_all ran meanwhile and may have come before the copy.
            key.withUnsafeBytes { key in
                for node in replicas.map({ topology.nodes[$0] }) {
                    ReplicaCopy.delete(key, base64: base64, at: node, worker: worker, session: nil)
                }
            }
        }
        worker.context.fence.exitCopy(stripe)
        if !found { worker.counters.add(.warmupMisses) }
        completion(found)
    }
}
