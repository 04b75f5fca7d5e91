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

    public init(configuration: ProxyConfiguration, nodes: [BackendNode], previous: PreviousPlacement?) throws(RingError) {
        self.configuration = configuration
        self.ring = try KetamaRing(nodes: configuration.nodes, mode: configuration.hashMode)
        self.nodes = nodes
        self.replicas = min(configuration.effectiveReplicas, ring.nodesOnRing)
        self.previous = previous
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
