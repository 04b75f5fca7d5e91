import Buffers
import MemcacheProtocol

/// Copies one key's value to where it belongs now, so neither a membership
/// change nor a node that came back empty costs a miss or an odd answer.
///
/// During a change's `warming` phase a key missing at its new replicas may
/// still be at its previous owners; after a node is flushed on its return,
/// its keys are still on their next replica. Before such a key is read (on a
/// miss) or changed (before a command that depends on the stored value), the
/// proxy asks each source in turn (`mg <key> v f t c`: value, flags,
/// remaining TTL, CAS) and copies the first hit to the key's replicas with
/// `ms ... ME c` (add), keeping flags and TTL: an add never replaces a value
/// written since.
///
/// Another proxy may change or delete the key between the read and the add;
/// its write reaches the source too (sources are kept current while copies
/// are made), so the source is asked for its CAS again once the copies are
/// in, and when it changed, each copy is deleted again if it is still the one
/// made (`md <key> C<copy's cas>`). The key is then missing where it belongs:
/// a miss, never a value overwritten or deleted.
///
///   mg at source --hit--> add at each replica --> mg c at source --same--> done(found)
///       |  miss, failure: next source               '--changed--> md C<cas> each copy --> done(not found)
///       '--no source left--> done(not found)
final class KeyMigration: ReplyReceiver {
    private let key: [UInt8]
    /// The key travels in base64 (meta `b`), as the client sent it.
    private let base64: Bool
    private let sources: [BackendNode]
    private var sourceIndex = 0
    private let targets: [BackendNode]
    private let topology: Topology
    private unowned let worker: ProxyWorker
    private var completion: ((Bool) -> Void)?
    private var step = Step.fetching
    private var copiesPending = 0
    /// The source copy's CAS when it was read.
    private var sourceCas: UInt64 = 0
    /// The copies made, with their CAS.
    private var copies: [(node: BackendNode, cas: UInt64)] = []
    /// The `KeyFence` stripe held from the read to the last copy's answer.
    private let stripe: Int
    /// `flush_all` requests routed when the move started.
    private let flushesAtStart: Int

    private enum Step { case fetching, copying, checking }

    /// Where `key` may be copied from and to, when it is missing where `route`
    /// reads it: its previous owners during a change's warming phase, or the
    /// next live replicas when the first live one came back empty and is
    /// refilling. `missedAt` is the node that just answered a miss (not asked
    /// again). Nil when there is nowhere to copy from.
    static func plan(for route: KeyRoute, topology: Topology, now: Int64, missedAt: BackendNode? = nil)
        -> (sources: [BackendNode], targets: [BackendNode])? {
        guard let first = topology.nextLive(in: route.reads, from: 0) else { return nil }
        let targets = route.reads.map { topology.nodes[$0] }.filter(\.isUp)
        var sources: [BackendNode] = []
        for index in route.sources {
            let node = topology.nodes[index]
            if node.isUp && node !== missedAt && !sources.contains(where: { $0 === node }) { sources.append(node) }
        }
        let primary = topology.node(at: first, of: route.reads)
        if sources.isEmpty && primary.isRefilling(now: now) {
            for position in (first + 1)..<route.reads.count {
                let node = topology.node(at: position, of: route.reads)
                if node.isUp && node !== missedAt { sources.append(node) }
            }
        }
        return sources.isEmpty ? nil : (sources, targets)
    }

    private init(key: UnsafeRawBufferPointer, base64: Bool, stripe: Int, sources: [BackendNode], targets: [BackendNode],
                 topology: Topology, worker: ProxyWorker, completion: @escaping (Bool) -> Void) {
        self.key = Array(key)
        self.stripe = stripe
        self.flushesAtStart = worker.context.fence.flushes.load(ordering: .acquiring)
        self.base64 = base64
        self.sources = sources
        self.targets = targets
        self.topology = topology
        self.worker = worker
        self.completion = completion
    }

    /// Starts copying `key` (whose `KeyFence` stripe is `stripe`); `completion(found)`
    /// runs once it is in place (or was not found). False, with no completion,
    /// when a write of the key is under way (the request then meets the key as
    /// it is where it belongs now).
    @discardableResult
    static func start(key: UnsafeRawBufferPointer, base64: Bool, stripe: Int,
                      plan: (sources: [BackendNode], targets: [BackendNode]),
                      topology: Topology, worker: ProxyWorker, completion: @escaping (Bool) -> Void) -> Bool {
        guard worker.context.fence.tryEnterCopy(stripe) else {
            worker.counters.add(.warmupSkips)
            return false
        }
        let migration = KeyMigration(key: key, base64: base64, stripe: stripe, sources: plan.sources,
                                     targets: plan.targets, topology: topology, worker: worker, completion: completion)
        migration.fetchFromNextSource()
        return true
    }

    private var source: BackendNode { sources[sourceIndex] }

    /// Asks the next source for the key; finishes when none is left.
    private func fetchFromNextSource() {
        while sourceIndex < sources.count {
            if let backend = worker.backend(for: source, session: nil) {
                backend.send(call: self, tag: 0, shape: .meta) { output in
                    key.withUnsafeBytes { RequestEncoder.appendFetch($0, base64: base64, to: &output) }
                }
                return
            }
            sourceIndex += 1
        }
        finish(found: false)
    }

    func backend(_ node: BackendNode, received unit: Response, in bytes: UnsafeRawBufferPointer, tag: Int,
                 last: Bool) -> Bool {
        switch step {
        case .fetching:
            guard unit.kind == .metaValue, let found = MetaValue(unit, in: bytes) else {
                sourceIndex += 1
                fetchFromNextSource()
                return true
            }
            sourceCas = found.cas
            step = .copying
            copy(UnsafeRawBufferPointer(rebasing: bytes[unit.data]), found)
        case .copying:
            if unit.kind == .metaHit, tag > 0, tag <= targets.count {
                copies.append((targets[tag - 1], MetaValue.cas(of: unit, in: bytes) ?? 0))
            }
            copyAnswered()
        case .checking:
            let unchanged = unit.kind == .metaHit && MetaValue.cas(of: unit, in: bytes) == sourceCas
            if !unchanged { undoCopies() }
            finish(found: unchanged)
        }
        return true
    }

    func backend(_ node: BackendNode, failed failure: BackendFailure, tag: Int) {
        switch step {
        case .fetching:
            sourceIndex += 1
            fetchFromNextSource()
        case .copying:
            copyAnswered()
        case .checking:
            // Whether the source changed is unknown: the copies do not stay.
            undoCopies()
            finish(found: false)
        }
    }

    /// Adds the value at every target but the source.
    private func copy(_ value: UnsafeRawBufferPointer, _ found: MetaValue) {
        for (index, target) in targets.enumerated() where target !== source {
            guard let backend = worker.backend(for: target, session: nil) else { continue }
            copiesPending += 1
            backend.send(call: self, tag: index + 1, shape: .meta) { output in
                key.withUnsafeBytes { key in
                    RequestEncoder.appendCopy(key, base64: base64, value: value, clientFlags: found.clientFlags,
                                              exptime: found.exptime, onlyIfAbsent: true, returnCas: true, to: &output)
                }
            }
        }
        if copiesPending == 0 { finish(found: true) }
    }

    private func copyAnswered() {
        copiesPending -= 1
        guard copiesPending == 0 else { return }
        guard !copies.isEmpty else {
            // Every replica had the key already.
            return finish(found: true)
        }
        guard let backend = worker.backend(for: source, session: nil) else {
            undoCopies()
            return finish(found: false)
        }
        step = .checking
        backend.send(call: self, tag: 0, shape: .meta) { output in
            key.withUnsafeBytes { RequestEncoder.appendCasProbe($0, base64: base64, to: &output) }
        }
    }

    /// Deletes each copy made, if it is still the copy (a write since stays).
    private func undoCopies() {
        key.withUnsafeBytes { key in
            for (node, cas) in copies {
                ReplicaCopy.delete(key, base64: base64, at: node, ifCas: cas, worker: worker)
            }
        }
        copies.removeAll()
    }

    private func finish(found: Bool) {
        guard let completion else { return }
        self.completion = nil
        var found = found
        if found && worker.context.fence.flushes.load(ordering: .acquiring) != flushesAtStart {
            // A flush_all ran meanwhile and may have come before the copy.
            undoCopies()
            found = false
        }
        worker.context.fence.exitCopy(stripe)
        worker.counters.add(found ? .warmupHits : .warmupMisses)
        completion(found)
    }
}
