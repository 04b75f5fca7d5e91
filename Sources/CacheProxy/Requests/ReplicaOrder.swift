/// Which of a key's replicas the proxy asks, and in what order, in one place.
/// Positions count along the key's replica set, 0 being the primary.
///
/// - A read asks the first live replica; on an error, a timeout or a lost
///   connection, the next live one (`ProxiedRequest.sendRead`; a multi-get's
///   batches the same way, key by key, `MultiGet`).
/// - A miss is asked again of the next live replica with `miss_failover`.
/// - A write goes to every live replica; the client gets the first live
///   replica's answer (`ProxiedRequest.sendWrite`).
/// - A compare-and-swap goes to the first live replica only, the one whose
///   `gets` the client saw (`ProxiedRequest.sendCompareAndSwap`).
/// - A refill reads from the next live replica after the first, when the
///   first came back empty (`KeyMigration.source`).
///
/// "Live" is the node's health (`BackendNode.isUp`); a node that is down is
/// skipped, never removed from the ring, so keys do not move.
extension Topology {
    /// The first position at or after `position` whose node is up, if any.
    @inline(__always)
    func nextLive(in replicas: ReplicaSet, from position: Int) -> Int? {
        var position = position
        while position < replicas.count {
            if nodes[replicas[position]].isUp { return position }
            position += 1
        }
        return nil
    }

    /// The node at `position` of `replicas`.
    @inline(__always)
    func node(at position: Int, of replicas: ReplicaSet) -> BackendNode { nodes[replicas[position]] }
}
