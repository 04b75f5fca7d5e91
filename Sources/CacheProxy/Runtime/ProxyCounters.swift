import EventLoop

/// What the proxy counts, per worker, for `stats` and `/metrics`.
enum ProxyCounter: Int, CaseIterable {
    case totalConnections
    case cmdGet, cmdSet, cmdTouch, cmdFlush, cmdMeta, cmdDelete, cmdArithmetic
    case getHits, getMisses
    case deleteHits, deleteMisses, incrHits, incrMisses, decrHits, decrMisses
    case casHits, casMisses, casBadval, touchHits, touchMisses
    /// Reads answered by a replica because the primary failed or was down.
    case readFallbacks
    /// Misses at the primary retried on a replica (miss_failover).
    case missFailovers
    /// Keys copied from their previous owner after a scale-out.
    case warmupHits, warmupMisses
    /// Copies not made because a write of the key was under way (`KeyFence`).
    case warmupSkips
    /// Writes read back from their replicas, and copies repaired because
    /// they differed from the first replica's (`ReplicaCheck`).
    case replicaChecks, replicaRepairs
    /// Checks dropped because too many were already waiting to read again.
    case replicaCheckSkips
    /// Writes that reached fewer replicas than the key has.
    case degradedWrites
    /// Requests no live node could answer.
    case unavailable
    case clientErrors
    case bytesRead, bytesWritten
}

typealias ProxyCounters = LoopCounters<ProxyCounter>
