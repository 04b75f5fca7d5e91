/// Why a node list cannot be made into a ring. Each case names the node (its
/// index in the list) so a configuration error can point at the right line.
public enum RingError: Error, Hashable, Sendable {
    case noNodes
    /// libmemcached quietly treats 0 as 1 and twemproxy refuses it; so do we.
    case zeroWeight(node: Int)
    /// Two nodes hash from the same point key: the second would own nothing.
    case duplicatePointKey(node: Int, sameAs: Int)
    /// libmemcached's KETAMA ignores weights only when servers are added before
    /// the behaviour is set; in the other order (pylibmc's) a weight above 1
    /// silently switches it to weighted MD5 points. No single answer to match.
    case weightInClassicMode(node: Int)
    /// libmemcached refuses host names longer than 1024 bytes.
    case pointKeyTooLong(node: Int)
    /// Weights are summed in 32 bits by twemproxy.
    case totalWeightTooLarge
}
