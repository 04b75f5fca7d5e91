import Buffers
import EventLoop
import Logging
import MemcacheProtocol
import Synchronization

/// Moves keys to where the membership puts them without waiting for reads
/// (docs/membership.md, "Rebalance"). Runs on the proxy's main loop, one pass
/// at a time, over every node's `lru_crawler metadump all`:
///
/// - **copy**, during a change's warming phase (when every proxy still writes
///   the old owners): each key an old owner lists is copied to its new owners
///   that lack it, as a warm-up copy is: `mg k v f t c` at the old owner,
///   `ms ... ME c` (add) at each new owner, then `mg k c` at the old owner;
///   when its CAS moved meanwhile (another proxy wrote or deleted the key),
///   the copies are deleted again by their own CAS. A node being removed is
///   drained this way before the change ends;
/// - **clean**, once the change is over: a key a member holds but does not
///   own any more is deleted there (no proxy reads it there), so it cannot
///   come back should that member own the key again later;
/// - **repair**, outside a change: each key a member lists is copied, as
///   above, to its other owners that lack it, and deleted where it has no
///   owner. It refills a node that came back empty (only towards that node)
///   and runs on demand (`POST /rebalance`, `memcluster-admin rebalance`),
///   so redundancy is restored without waiting for reads.
///
/// At most `rebalance_keys_per_s` keys a second, 64 in flight. The pass stops
/// when the topology changes or, for a copy, before the warming phase ends.
final class Rebalancer {
    enum Pass: UInt8, CaseIterable { case idle, copying, cleaning, repairing }

    /// Counters any thread may read (`stats`, `/metrics`).
    final class Progress: Sendable {
        let pass = Atomic<UInt8>(Pass.idle.rawValue)
        let keysListed = Atomic<UInt64>(0)
        let keysCopied = Atomic<UInt64>(0)
        let copiesUndone = Atomic<UInt64>(0)
        let orphansDeleted = Atomic<UInt64>(0)
        let failures = Atomic<UInt64>(0)
        let passesCompleted = Atomic<UInt64>(0)

        var currentPass: Pass { Pass(rawValue: pass.load(ordering: .relaxed)) ?? .idle }

        /// Name, help and value of each counter, for `stats` and `/metrics`.
        var counters: [(name: String, help: String, value: UInt64)] {
            [
                ("keys_listed", "Keys the rebalance read from the nodes' metadumps.", keysListed.load(ordering: .relaxed)),
                ("keys_copied", "Keys the rebalance copied to owners missing them.", keysCopied.load(ordering: .relaxed)),
                ("copies_undone", "Rebalance copies deleted again because their source changed meanwhile.",
                 copiesUndone.load(ordering: .relaxed)),
                ("orphans_deleted", "Copies the rebalance deleted at members that no longer own the key.",
                 orphansDeleted.load(ordering: .relaxed)),
                ("failures", "Rebalance requests or node listings that failed.", failures.load(ordering: .relaxed)),
                ("passes", "Rebalance passes that ran to their end.", passesCompleted.load(ordering: .relaxed)),
            ]
        }
    }

    private let loop: EventLoop
    private let context: ProxyContext
    private let logger: Logger
    private var topology: Topology?
    private var pass = Pass.idle
    /// Nodes still to list, and the one being listed.
    private var nodesToList: [Int] = []
    private var reader: MetadumpReader?
    private var listing = 0
    private var readerDone = true
    /// Keys listed and not handled yet, with the node that listed them.
    private var queue = RingQueue<(key: [UInt8], source: Int)>()
    private var inFlight = 0
    private var tokens = 0.0
    private var ticker: EventTimer?
    private var channels: [ObjectIdentifier: NodeChannel] = [:]
    /// A repair towards one node only (one that came back empty); nil: every owner.
    private var repairTarget: BackendNode?
    static let maxInFlight = 64
    static let tickMilliseconds = 10

    init(loop: EventLoop, context: ProxyContext, logger: Logger) {
        self.loop = loop
        self.context = context
        self.logger = logger
    }

    /// Copies the keys the change of `topology` moved, from their old owners.
    func copyMovedKeys(_ topology: Topology) {
        guard let transition = topology.transition else { return }
        start(.copying, topology, listing: Array(0..<topology.nodes.count).filter { index in
            transition.earlier.nodes.contains { $0 === topology.nodes[index] }
        })
    }

    /// Deletes keys members hold without owning them, under `topology`.
    func cleanOrphans(_ topology: Topology) {
        start(.cleaning, topology, listing: Array(0..<topology.ring.nodes.count))
    }

    /// Why a repair cannot start now, if it cannot.
    enum RepairRefusal: Error, CustomStringConvertible {
        case disabled, changeUnderWay, passUnderWay(Pass)

        var description: String {
            switch self {
            case .disabled: return "rebalance is off (rebalance: false)"
            case .changeUnderWay: return "a membership change is under way; its own passes move the keys"
            case .passUnderWay(let pass): return "a rebalance pass is under way (\(pass))"
            }
        }
    }

    /// Starts a repair of every key of every member (on demand).
    func repairAll(_ topology: Topology) -> Result<Int, RepairRefusal> {
        if let refusal = repairRefusal(topology) { return .failure(refusal) }
        let members = Array(0..<topology.ring.nodes.count)
        start(.repairing, topology, listing: members)
        return .success(members.count)
    }

    /// Refills `node`, which came back empty, from the other members, unless
    /// another pass or a change is under way (reads still refill it then).
    func refill(_ node: BackendNode, _ topology: Topology) {
        guard repairRefusal(topology) == nil,
              let target = topology.nodes.firstIndex(where: { $0 === node }), target < topology.ring.nodes.count
        else { return }
        start(.repairing, topology, listing: Array(0..<topology.ring.nodes.count).filter { $0 != target },
              towards: node)
    }

    private func repairRefusal(_ topology: Topology) -> RepairRefusal? {
        if !topology.configuration.rebalance { return .disabled }
        if topology.transition != nil { return .changeUnderWay }
        if pass != .idle { return .passUnderWay(pass) }
        return nil
    }

    /// A pass stopped by a reload, and where it was, to go on with it when
    /// the membership did not change.
    struct Interrupted {
        fileprivate let pass: Pass
        fileprivate let generation: String
        fileprivate let unlisted: [Int]
        fileprivate let target: BackendNode?
    }

    /// Stops the pass under way (a new topology is being installed); returns
    /// what a clean or repair pass still had to list.
    @discardableResult
    func cancel() -> Interrupted? {
        guard pass != .idle else { return nil }
        logger.info("rebalance stopped", metadata: ["pass": "\(pass)"])
        var interrupted: Interrupted?
        if let topology, pass == .cleaning || pass == .repairing {
            // The node being listed is listed again: its queued keys are dropped.
            let unlisted = (readerDone && reader == nil && queue.isEmpty ? [] : [listing]) + nodesToList
            interrupted = Interrupted(pass: pass, generation: topology.generation, unlisted: unlisted, target: repairTarget)
        }
        finish()
        return interrupted
    }

    /// Goes on with a clean or repair pass a reload stopped, from the node it
    /// was listing, when `topology` places keys as the stopped pass's did and
    /// no change is under way. (A change's copy pass is started again by the
    /// change's own timer.)
    func resume(_ interrupted: Interrupted, on topology: Topology) {
        guard interrupted.generation == topology.generation, topology.transition == nil,
              interrupted.target.map({ target in topology.nodes.contains { $0 === target } }) ?? true
        else { return }
        logger.info("rebalance resumed after a reload", metadata: ["pass": "\(interrupted.pass)",
                                                                   "nodes_left": "\(interrupted.unlisted.count)"])
        start(interrupted.pass, topology, listing: interrupted.unlisted, towards: interrupted.target)
    }

    private func start(_ kind: Pass, _ topology: Topology, listing nodes: [Int], towards target: BackendNode? = nil) {
        cancel()
        guard topology.configuration.rebalance, !nodes.isEmpty else { return }
        self.topology = topology
        repairTarget = target
        pass = kind
        context.rebalance.pass.store(kind.rawValue, ordering: .relaxed)
        nodesToList = nodes
        tokens = 0
        logger.info("rebalance started", metadata: ["pass": "\(kind)", "nodes": "\(nodes.count)",
                                                    "towards": "\(target.map { "\($0)" } ?? "every owner")"])
        let timer = EventTimer(loop: loop, milliseconds: Rebalancer.tickMilliseconds, repeating: true) { [unowned self] in tick() }
        timer.start()
        ticker = timer
        listNextNode()
    }

    private func finish() {
        ticker?.stop()
        ticker = nil
        reader?.cancel()
        reader = nil
        readerDone = true
        queue.removeAll()
        for channel in channels.values { channel.close() }
        channels.removeAll()
        inFlight = 0
        nodesToList = []
        topology = nil
        repairTarget = nil
        pass = .idle
        context.rebalance.pass.store(Pass.idle.rawValue, ordering: .relaxed)
    }

    private func listNextNode() {
        guard let topology, !nodesToList.isEmpty else {
            readerDone = true
            return
        }
        listing = nodesToList.removeFirst()
        let node = topology.nodes[listing]
        guard node.isUp else {
            logger.warning("rebalance skips a node that is not up", metadata: ["node": "\(node)"])
            context.rebalance.failures.add(1, ordering: .relaxed)
            return listNextNode()
        }
        readerDone = false
        reader = MetadumpReader(node: node, loop: loop, dialer: context.nodeDialer) { [unowned self] event in
            switch event {
            case .keys(let keys):
                context.rebalance.keysListed.add(UInt64(keys.count), ordering: .relaxed)
                for key in keys { queue.append((key, listing)) }
            case .finished:
                reader = nil
                listNextNode()
            case .failed(let reason):
                logger.warning("rebalance could not list a node's keys", metadata: ["node": "\(node)", "reason": "\(reason)"])
                context.rebalance.failures.add(1, ordering: .relaxed)
                reader = nil
                listNextNode()
            }
        }
    }

    private func tick() {
        guard let topology else { return }
        let now = monotonicMilliseconds()
        let configuration = topology.configuration
        guard context.topology === topology, stillAllowed(at: now) else { cancel(); return }
        let deadline = now - Int64(configuration.requestTimeoutMilliseconds)
        for channel in channels.values { channel.expire(olderThan: deadline) }
        let perTick = Double(configuration.rebalanceKeysPerSecond) * Double(Rebalancer.tickMilliseconds) / 1000
        tokens = min(tokens + perTick, max(perTick, Double(Rebalancer.maxInFlight)))
        while tokens >= 1, inFlight < Rebalancer.maxInFlight, !queue.isEmpty {
            tokens -= 1
            let (key, source) = queue.removeFirst()
            handle(key, from: source, now: now)
        }
        if queue.isEmpty { reader?.resume() }
        if queue.isEmpty, inFlight == 0, readerDone, reader == nil {
            context.rebalance.passesCompleted.add(1, ordering: .relaxed)
            logger.info("rebalance finished", metadata: ["pass": "\(pass)"])
            finish()
        }
    }

    /// A copy must be done while every proxy still writes the old owners: it
    /// stops one request timeout before the warming phase ends.
    private func stillAllowed(at now: Int64) -> Bool {
        guard pass == .copying else { return topology?.transition == nil }
        guard let transition = topology?.transition else { return false }
        return transition.phase(at: now) == .warming
            && now < transition.warmingEndsAt - Int64(topology?.configuration.requestTimeoutMilliseconds ?? 0)
    }

    private func channel(to index: Int) -> NodeChannel? {
        guard let topology else { return nil }
        let node = topology.nodes[index]
        if let channel = channels[ObjectIdentifier(node)], !channel.isClosed { return channel }
        let channel = NodeChannel(node: node, loop: loop, dialer: context.nodeDialer)
        channels[ObjectIdentifier(node)] = channel
        return channel.isClosed ? nil : channel
    }

    /// Keys a text-protocol client can name: others are left where they are.
    private static func isPlainKey(_ key: [UInt8]) -> Bool {
        key.count <= 250 && key.allSatisfy { $0 > 0x20 && $0 != 0x7F }
    }

    private func handle(_ key: [UInt8], from source: Int, now: Int64) {
        guard let topology, Rebalancer.isPlainKey(key) else { return }
        let owners = key.withUnsafeBytes { topology.replicaSet(of: $0) }
        switch pass {
        case .cleaning:
            guard !owners.contains(source) else { return }
            deleteOrphan(key, at: source, now: now)
        case .copying:
            guard let transition = topology.transition,
                  key.withUnsafeBytes({ transition.earlier.replicaSet(of: $0) }).contains(source) else { return }
            let targets = owners.filter { $0 != source && topology.nodes[$0].isUp }
            guard !targets.isEmpty else { return }
            inFlight += 1
            copy(key, from: source, to: Array(targets), now: now) { [unowned self] in inFlight -= 1 }
        case .repairing:
            guard owners.contains(source) else {
                // An orphan: deleted in a full repair, left alone by a refill.
                if repairTarget == nil { deleteOrphan(key, at: source, now: now) }
                return
            }
            let targets = owners.filter { index in
                index != source && topology.nodes[index].isUp && (repairTarget.map { $0 === topology.nodes[index] } ?? true)
            }
            guard !targets.isEmpty else { return }
            inFlight += 1
            copy(key, from: source, to: Array(targets), now: now) { [unowned self] in inFlight -= 1 }
        case .idle:
            return
        }
    }

    /// Deletes a copy held by a member that does not own the key.
    private func deleteOrphan(_ key: [UInt8], at source: Int, now: Int64) {
        guard let channel = channel(to: source) else { return }
        inFlight += 1
        channel.send(now: now, { output in key.withUnsafeBytes { RequestEncoder.appendMetaDelete($0, base64: false, to: &output) } }) { [unowned self] reply in
            inFlight -= 1
            if case .hit = reply { context.rebalance.orphansDeleted.add(1, ordering: .relaxed) }
            if case .failed = reply { context.rebalance.failures.add(1, ordering: .relaxed) }
        }
    }

    /// One key from `source` to `targets`, checked against the source's CAS
    /// afterwards (see the type's comment); `done` runs once, at the end.
    private func copy(_ key: [UInt8], from source: Int, to targets: [Int], now: Int64, done: @escaping () -> Void) {
        guard let sourceChannel = channel(to: source) else { return done() }
        let progress = context.rebalance
        sourceChannel.send(now: now, { output in key.withUnsafeBytes { RequestEncoder.appendFetch($0, base64: false, to: &output) } }) { [unowned self] reply in
            guard case .value(let meta, let value) = reply else {
                if case .failed = reply { progress.failures.add(1, ordering: .relaxed) }
                return done()
            }
            let channels = targets.compactMap { channel(to: $0) }
            let copy = CopyInProgress(expected: channels.count)
            guard !channels.isEmpty else { return done() }
            for channel in channels {
                channel.send(now: monotonicMilliseconds(), { output in
                    key.withUnsafeBytes { keyBytes in
                        value.withUnsafeBytes { valueBytes in
                            RequestEncoder.appendCopy(keyBytes, base64: false, value: valueBytes, clientFlags: meta.clientFlags,
                                                      exptime: meta.exptime, onlyIfAbsent: true, returnCas: true, to: &output)
                        }
                    }
                }) { [unowned self] reply in
                    if case .hit(let cas?) = reply { copy.copies.append((channel, cas)) }
                    guard copy.answered() else { return }
                    guard !copy.copies.isEmpty else { return done() }
                    check(key, at: sourceChannel, expecting: meta.cas, copies: copy.copies, done: done)
                }
            }
        }
    }

    /// Whether the source still holds what was copied; if not, the copies go.
    private func check(_ key: [UInt8], at source: NodeChannel, expecting cas: UInt64, copies: [(NodeChannel, UInt64)],
                       done: @escaping () -> Void) {
        let progress = context.rebalance
        source.send(now: monotonicMilliseconds(), { output in key.withUnsafeBytes { RequestEncoder.appendCasProbe($0, base64: false, to: &output) } }) { reply in
            if case .hit(cas) = reply {
                progress.keysCopied.add(1, ordering: .relaxed)
                return done()
            }
            progress.copiesUndone.add(1, ordering: .relaxed)
            for (channel, copyCas) in copies {
                channel.send(now: monotonicMilliseconds(), { output in
                    key.withUnsafeBytes { RequestEncoder.appendConditionalDelete($0, base64: false, cas: copyCas, to: &output) }
                }) { _ in }
            }
            done()
        }
    }
}

/// The answers one copy is waiting for, and the copies made so far.
private final class CopyInProgress {
    private var waiting: Int
    var copies: [(NodeChannel, UInt64)] = []

    init(expected: Int) { waiting = expected }

    /// Counts one answer; true for the last.
    func answered() -> Bool {
        waiting -= 1
        return waiting == 0
    }
}
