import EventLoop

/// Where keys live, as one immutable snapshot: the configuration, its ring, and
/// the nodes behind the ring's indices. A reload builds a new snapshot and hands
/// it to every worker; requests already routed keep the one they started with.
public final class Topology: Sendable {
    public let configuration: ProxyConfiguration
    public let ring: KetamaRing
    /// `nodes[i]` is the node behind ring index `i`.
    public let nodes: [BackendNode]
    public let replicas: Int
    /// After nodes were added: where keys lived before, so a miss at a key's new
    /// owner can be filled from its previous one until `warmupUntil`.
    public let previous: PreviousPlacement?

    public struct PreviousPlacement: Sendable {
        public let ring: KetamaRing
        public let nodes: [BackendNode]
        /// Monotonic milliseconds after which warm-up stops.
        public let warmupUntil: Int64
    }

    /// Names this membership: the same for every proxy that places keys the
    /// same way (see `Topology.generation(of:replicas:)`), so an operator can
    /// check that all proxies agree (`stats`, `stats nodes`, `/metrics`).
    public let generation: String

    public init(configuration: ProxyConfiguration, nodes: [BackendNode], previous: PreviousPlacement?) throws(RingError) {
        self.configuration = configuration
        self.ring = try KetamaRing(nodes: configuration.nodes, mode: configuration.hashMode, keyHash: configuration.keyHash)
        self.nodes = nodes
        self.replicas = min(configuration.effectiveReplicas, ring.nodesOnRing)
        self.previous = previous
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

    /// The key's replica set, primary first.
    @inline(__always)
    public func replicaSet(of key: UnsafeRawBufferPointer) -> ReplicaSet {
        ring.replicaSet(of: key, count: replicas)
    }

    /// The node that owned `key` before the last scale-out, when warm-up is still
    /// running and that node differs from the key's owner now.
    public func previousOwner(of key: UnsafeRawBufferPointer, currentOwner: BackendNode, now: Int64) -> BackendNode? {
        guard let previous, now < previous.warmupUntil else { return nil }
        let owner = previous.nodes[previous.ring.owner(of: key)]
        return owner === currentOwner || !owner.isUp ? nil : owner
    }
}
