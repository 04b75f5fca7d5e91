/// A cache node as the ring sees it: where it is, how much of the key space it
/// should own, and the name its points are hashed under.
public struct RingNode: Hashable, Sendable {
    public var host: String
    public var port: UInt16
    /// Share of the key space relative to the other nodes; at least 1.
    public var weight: UInt32
    /// When set, the node's points are hashed from this name instead of its
    /// address (twemproxy's `host:port:weight name`), so a node can move to a new
    /// address, or stand in for the host name clients used, without moving keys.
    public var name: String?

    public init(host: String, port: UInt16, weight: UInt32 = 1, name: String? = nil) {
        self.host = host
        self.port = port
        self.weight = weight
        self.name = name
    }

    /// What the ring hashes for this node before "-k": the name when there is
    /// one; else the host alone on memcached's default port 11211, as
    /// libmemcached and twemproxy both do; else "host:port".
    public var pointKey: String {
        if let name { return name }
        return port == 11211 ? host : "\(host):\(port)"
    }
}
