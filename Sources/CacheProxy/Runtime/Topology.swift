import EventLoop

/// Where keys live, as one immutable snapshot: the configuration, its ring, the
/// nodes behind the ring's indices, and the membership change under way, if
/// any. A reload builds a new snapshot and hands it to every worker; requests
/// already routed keep the one they started with.
public final class Topology: Sendable {
    public let configuration: ProxyConfiguration
    public let ring: KetamaRing
    /// `nodes[i]` is the node behind ring index `i`, for `i < ring.nodes.count`;
    /// after them, nodes an earlier membership had and this one has not (they
    /// still get writes, invalidations or reads during a change, never new keys).
    public let nodes: [BackendNode]
    public let replicas: Int
    /// The change from the previous membership to this one (docs/membership.md).
    public let transition: Transition?
    /// Memberships before the previous one whose copies may still linger on
    /// nodes that no longer own them: a write of such a key deletes them, so no
    /// stale copy is left for a later membership to find.
    public let shadows: [EarlierPlacement]

    /// Names this membership: the same for every proxy that places keys the
    /// same way (see `Topology.generation(of:replicas:)`), so an operator can
    /// check that all proxies agree (`stats`, `stats nodes`, `/metrics`).
    public let generation: String

    /// `nodes` are the ring's nodes in configuration order. The nodes
    /// `transition` and `shadows` name beyond them are added after them.
    public init(configuration: ProxyConfiguration, nodes: [BackendNode], transition: Transition? = nil,
                shadows: [EarlierPlacement] = []) throws(RingError) {
        self.configuration = configuration
        self.ring = try KetamaRing(nodes: configuration.nodes, mode: configuration.hashMode, keyHash: configuration.keyHash)
        var all = nodes
        func index(of node: BackendNode) -> Int {
            if let found = all.firstIndex(where: { $0 === node }) { return found }
            all.append(node)
            return all.count - 1
        }
        self.transition = transition.map { $0.resolved(index) }
        // Shadows only matter at nodes still in play: a node that left is
        // flushed before it serves again should it rejoin (ProxyServer.reload).
        let inPlay = all
        self.shadows = shadows.map { $0.resolved { node in inPlay.firstIndex { $0 === node } ?? -1 } }
        self.nodes = all
        self.replicas = min(configuration.effectiveReplicas, ring.nodesOnRing)
        self.generation = Topology.generation(of: configuration, replicas: replicas)
    }

    /// A digest of what decides where keys live: each node by the address it
    /// resolves to (so `localhost` and `127.0.0.1` agree), its weight and
    /// name, in any order, and the hash mode and replica count. 16 hex digits.
    static func generation(of configuration: ProxyConfiguration, replicas: Int) -> String {
        let nodes = configuration.nodes.map { node -> String in
            let address = SocketAddress.resolvedForms(host: node.host, port: node.port).sorted().first
                ?? HostPort(host: node.host, port: node.port).description
            return "\(address) \(node.weight) \(node.name ?? "")"
        }.sorted()
        let placement = "hash \(configuration.hashMode) \(configuration.effectiveKeyHash.rawValue)"
        let text = (nodes + [placement, "replicas \(replicas)"]).joined(separator: "\n")
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        let digits = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// The key's replica set under this membership, primary first.
    @inline(__always)
    public func replicaSet(of key: UnsafeRawBufferPointer) -> ReplicaSet {
        ring.replicaSet(of: key, count: replicas)
    }

    /// This membership as an earlier one, for the snapshot that replaces it.
    public var asEarlier: EarlierPlacement {
        EarlierPlacement(ring: ring, replicas: replicas, nodes: Array(nodes[0..<ring.nodes.count]))
    }

    /// The phase of the membership change under way at `now`, or "stable".
    public func phase(at now: Int64) -> String {
        guard let transition, transition.phase(at: now) != .finished else { return "stable" }
        return transition.phase(at: now).rawValue
    }

    /// Where a request for `key` goes at `now` (monotonic ms).
    @inline(__always)
    func route(of key: UnsafeRawBufferPointer, now: Int64) -> KeyRoute {
        let hash = ring.hash(of: key)
        let current = ring.replicaSet(ofHash: hash, count: replicas)
        var route = KeyRoute(reads: current, writes: current)
        guard transition != nil || !shadows.isEmpty else { return route }
        var stale = ReplicaSet()
        if let transition {
            let earlier = transition.earlier.replicaSet(of: key, hashedAs: hash, by: ring)
            var phase = transition.phase(at: now)
            if phase == .warming || phase == .settling, awaitsFlush(current, joiningFrom: earlier) {
                phase = .guarded
            }
            switch phase {
            case .guarded:
                // The old owners serve; the new ones must hold nothing a lagging
                // proxy's write could make stale.
                route.reads = earlier
                route.writes = earlier
                stale = current
            case .warming:
                route.writes.formUnion(earlier)
                route.sources = earlier
            case .settling:
                route.writes.formUnion(earlier)
            case .finished:
                stale = earlier
            }
        }
        for shadow in shadows { stale.formUnion(shadow.replicaSet(of: key, hashedAs: hash, by: ring)) }
        // Only members are cleaned: a node that left the ring gets nothing once
        // the change is over, and is flushed if it ever joins again.
        for index in stale.subtracting(route.writes) where index < ring.nodes.count {
            route.invalidations.append(index)
        }
        return route
    }
}

extension Topology {
    /// Whether a node of `current` that `earlier` lacks is still being flushed
    /// after joining (or coming back): until it is, the key's old owners serve.
    private func awaitsFlush(_ current: ReplicaSet, joiningFrom earlier: ReplicaSet) -> Bool {
        for index in current where !earlier.contains(index) && nodes[index].health == .recovering { return true }
        return false
    }
}

/// The nodes a request for one key goes to, by what it does there. Outside a
/// membership change `reads` and `writes` are the key's replica set and the
/// rest is empty.
struct KeyRoute {
    /// Asked in order, first live first.
    var reads: ReplicaSet
    /// Every live one gets a write; the client gets the first answer in this order.
    var writes: ReplicaSet
    /// A write also deletes the key here: nodes that may hold a copy no
    /// membership reads any more, which would be stale should one read it again.
    var invalidations = ReplicaSet()
    /// Where a key missing at `reads` may still be, and be copied from: its
    /// owners under the previous membership, while they are kept current.
    var sources = ReplicaSet()
}

/// Where keys lived under an earlier membership: its ring and replica count,
/// its nodes in ring order, and each one's index in the `Topology.nodes` of
/// the snapshot holding it.
public struct EarlierPlacement: Sendable {
    let ring: KetamaRing
    let replicas: Int
    public let nodes: [BackendNode]
    private var nodeIndices: [Int] = []

    init(ring: KetamaRing, replicas: Int, nodes: [BackendNode]) {
        self.ring = ring
        self.replicas = replicas
        self.nodes = nodes
    }

    /// The key's replicas then, as indices into the holding snapshot's nodes.
    func replicaSet(of key: UnsafeRawBufferPointer) -> ReplicaSet {
        mapped(ring.replicaSet(of: key, count: replicas))
    }

    /// The same, reusing `hash`, the key's hash on `current`, when both rings
    /// hash keys alike (the usual case: only the nodes changed).
    func replicaSet(of key: UnsafeRawBufferPointer, hashedAs hash: UInt32, by current: KetamaRing) -> ReplicaSet {
        let sameHash = ring.mode == current.mode && (ring.mode != .twemproxy || ring.keyHash == current.keyHash)
        return mapped(ring.replicaSet(ofHash: sameHash ? hash : ring.hash(of: key), count: replicas))
    }

    private func mapped(_ set: ReplicaSet) -> ReplicaSet {
        var mapped = ReplicaSet()
        for index in set where nodeIndices[index] >= 0 {
            mapped.append(nodeIndices[index])
        }
        return mapped
    }

    /// With its nodes numbered as a snapshot numbers them.
    func resolved(_ index: (BackendNode) -> Int) -> EarlierPlacement {
        var copy = self
        copy.nodeIndices = nodes.map(index)
        return copy
    }
}

/// A change of membership as this proxy lives it, timed from the moment it
/// learned the new one. `settle` bounds how much later than the first proxy the
/// last one learns a change; `warmup` is how long misses are copied from the
/// old owners. See docs/membership.md for why each phase is safe while other
/// proxies are up to `settle` ahead or behind.
///
///   learned     +settle          +settle+warmup     +2*settle+warmup
///     | guarded    | warming          | settling       | finished
///     | old reads  | new reads,       | new reads,     | new reads and writes;
///     | and writes;| copies from old; | writes to both | old-only owners
///     | new owners | writes to both   |                | invalidated on writes
///     | invalidated|                  |                |
public struct Transition: Sendable {
    public enum Phase: String, Sendable {
        case guarded, warming, settling, finished
    }

    public let earlier: EarlierPlacement
    /// Monotonic milliseconds when the proxy learned the change.
    public let learnedAt: Int64
    public let settleMilliseconds: Int64
    public let warmupMilliseconds: Int64

    public func phase(at now: Int64) -> Phase {
        let elapsed = now - learnedAt
        if elapsed < settleMilliseconds { return .guarded }
        if elapsed < settleMilliseconds + warmupMilliseconds { return .warming }
        if elapsed < 2 * settleMilliseconds + warmupMilliseconds { return .settling }
        return .finished
    }

    /// When the change is over: the new membership alone is read and written.
    public var endsAt: Int64 { learnedAt + 2 * settleMilliseconds + warmupMilliseconds }

    /// When copies from the old owners stop (the warming phase ends).
    public var warmingEndsAt: Int64 { learnedAt + settleMilliseconds + warmupMilliseconds }

    public init(earlier: EarlierPlacement, learnedAt: Int64, settleMilliseconds: Int64, warmupMilliseconds: Int64) {
        self.earlier = earlier
        self.learnedAt = learnedAt
        self.settleMilliseconds = settleMilliseconds
        self.warmupMilliseconds = warmupMilliseconds
    }

    func resolved(_ index: (BackendNode) -> Int) -> Transition {
        Transition(earlier: earlier.resolved(index), learnedAt: learnedAt, settleMilliseconds: settleMilliseconds,
                   warmupMilliseconds: warmupMilliseconds)
    }
}
