// The consistent-hash ring the proxy shards keys over: ketama, computed exactly
// as libmemcached and twemproxy compute it, so a team that hashed keys on the
// client moves to the proxy with every key still on the node that holds it.
//
//   [RingNode] --build, once per configuration--> continuum: (point, node) sorted
//   key bytes --hash--> u32 --first point >= hash, else wrap to the first--> owner
//                                        `--walk on clockwise, skip nodes seen--> replicas
//
// Modes. Every rule below was checked against the real libraries, not just read
// in their source: scripts/ring-oracle/ (README) makes the fixtures that
// Tests/CacheProxyTests replays, 100% of keys on the same node.
//
//   .libmemcachedWeighted  libmemcached MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED
//                          (pylibmc `ketama_weighted`, php-memcached LIBKETAMA_COMPATIBLE)
//   .twemproxy             twemproxy `hash: md5`, `distribution: ketama`
//   .libmemcachedClassic   libmemcached MEMCACHED_BEHAVIOR_KETAMA (pylibmc `ketama`),
//                          only with every weight 1
//
// Weighted modes (one ring; the two lines marked * are twemproxy's alone):
//   n nodes, W = sum of weights; in float32, as both C sources compute it:
//     pct = Float(w) / Float(W)
//     points = floor(Float(Double(pct * 160 / 4 * Float(n)) + 1e-10)) * 4
//   float32 shows: weights 1,1,5,9,9 give the weight-1 nodes 28 points where
//   exact arithmetic says 32. A node can get 0 points and then owns nothing.
//   For k in 0 ..< points/4: MD5("<pointKey>-<k>") read as four little-endian
//   u32 is four points. pointKey = name, else host when the port is 11211,
//   else "host:port" (RingNode.pointKey).
//   * twemproxy hashes at most the first 272 bytes of "<pointKey>-<k>".
//   A key sits at the first little-endian u32 of MD5(key).
// Classic mode: 100 points per node, point k = one_at_a_time("<pointKey>-<k>");
//   a key sits at one_at_a_time(key).
// Ties (two nodes on one point value): the earlier node wins. Earlier is list
//   order for libmemcached (its qsort is glibc's stable merge sort, over points
//   made in list order).
//   * For twemproxy, the order of the point keys by length, then by bytes:
//     nutcracker sorts its servers by name when it checks for duplicates.
//
// Threads: a ring is an immutable value; any thread may look up concurrently.
// Lookups do not allocate: they hash on the stack, binary-search the points and
// return an Int or an inline ReplicaSet.

/// A ketama continuum over a list of nodes. Lookups answer node indices into
/// `nodes`.
public struct KetamaRing: Sendable {
    public enum Mode: Sendable, Hashable {
        case libmemcachedWeighted
        case twemproxy
        case libmemcachedClassic
    }

    public let mode: Mode
    public let nodes: [RingNode]
    /// Points each node has on the ring, in node order.
    public let pointCounts: [Int]
    /// How many nodes own at least one point: the most distinct replicas a key can have.
    public let nodesOnRing: Int

    // The continuum in two parallel arrays, sorted by point, so the binary
    // search reads only the points.
    let points: [UInt32]
    let owners: [UInt32]

    /// A twemproxy ring's key hash (nutcracker's `hash:`); MD5 in every other mode.
    public let keyHash: TwemproxyKeyHash

    /// Builds the ring. Throws when the list is one that libmemcached or
    /// twemproxy would refuse, or would answer in a way we cannot match.
    public init(nodes: [RingNode], mode: Mode = .libmemcachedWeighted, keyHash: TwemproxyKeyHash = .md5) throws(RingError) {
        try Self.validate(nodes, mode)
        let totalWeight = nodes.reduce(UInt64(0)) { $0 + UInt64($1.weight) }
        let ranks = Self.tieRanks(nodes, mode)

        var entries: [(point: UInt32, rank: Int, node: Int)] = []
        var pointCounts = [Int](repeating: 0, count: nodes.count)
        var text: [UInt8] = []
        for (index, node) in nodes.enumerated() {
            let base = Array(node.pointKey.utf8)
            switch mode {
            case .libmemcachedClassic:
                for k in 0..<Self.classicPointsPerNode {
                    Self.pointText(&text, base, k, limit: nil)
                    entries.append((text.withUnsafeBytes(RingHash.oneAtATime), ranks[index], index))
                }
                pointCounts[index] = Self.classicPointsPerNode
            case .libmemcachedWeighted, .twemproxy:
                let count = Self.weightedPointCount(weight: node.weight, totalWeight: totalWeight, nodeCount: nodes.count)
                let limit = mode == .twemproxy ? Self.twemproxyPointTextLimit : nil
                for k in 0..<count / 4 {
                    Self.pointText(&text, base, k, limit: limit)
                    let words = text.withUnsafeBytes(RingHash.md5Words)
                    for point in [words.0, words.1, words.2, words.3] {
                        entries.append((point, ranks[index], index))
                    }
                }
                pointCounts[index] = count
            }
        }
        entries.sort { ($0.point, $0.rank) < ($1.point, $1.rank) }

        self.mode = mode
        self.keyHash = mode == .twemproxy ? keyHash : .md5
        self.nodes = nodes
        self.pointCounts = pointCounts
        self.nodesOnRing = pointCounts.count { $0 > 0 }
        self.points = entries.map(\.point)
        self.owners = entries.map { UInt32($0.node) }
    }

    // MARK: Lookups

    /// Where `key` sits on the ring.
    public func hash(of key: UnsafeRawBufferPointer) -> UInt32 {
        switch mode {
        case .libmemcachedWeighted: RingHash.md5(key)
        case .twemproxy: keyHash.hash(key)
        case .libmemcachedClassic: RingHash.oneAtATime(key)
        }
    }

    /// The node that owns `key`: the owner of the first point at or after the
    /// key's hash, wrapping past the top to the first point.
    public func owner(of key: UnsafeRawBufferPointer) -> Int {
        owner(ofHash: hash(of: key))
    }

    public func owner(ofHash hash: UInt32) -> Int {
        Int(owners[point(of: hash)])
    }

    /// The first `count` distinct nodes met walking clockwise from the key's
    /// point, the owner first. `count` is capped at `nodesOnRing` and at
    /// `ReplicaSet.maximumReplicas`.
    public func replicaSet(of key: UnsafeRawBufferPointer, count: Int) -> ReplicaSet {
        replicaSet(ofHash: hash(of: key), count: count)
    }

    public func replicaSet(ofHash hash: UInt32, count: Int) -> ReplicaSet {
        var set = ReplicaSet()
        let wanted = min(max(count, 0), nodesOnRing, ReplicaSet.maximumReplicas)
        guard wanted > 0 else { return set }
        owners.withUnsafeBufferPointer { owners in
            // Ends: `wanted` <= nodesOnRing distinct nodes are all on the ring,
            // and the walk visits every point within one turn.
            var position = point(of: hash)
            while set.count < wanted {
                let node = Int(owners[position])
                if !set.contains(node) { set.append(node) }
                position = position &+ 1 == owners.count ? 0 : position &+ 1
            }
        }
        return set
    }

    /// Like `replicaSet(of:count:)` for any count: writes up to `buffer.count`
    /// distinct node indices (capped at `nodesOnRing`) and returns how many.
    public func replicas(of key: UnsafeRawBufferPointer, into buffer: UnsafeMutableBufferPointer<Int>) -> Int {
        let wanted = min(buffer.count, nodesOnRing)
        guard wanted > 0 else { return 0 }
        var found = 0
        owners.withUnsafeBufferPointer { owners in
            var position = point(of: hash(of: key))
            while found < wanted {
                let node = Int(owners[position])
                if !buffer[..<found].contains(node) {
                    buffer[found] = node
                    found &+= 1
                }
                position = position &+ 1 == owners.count ? 0 : position &+ 1
            }
        }
        return found
    }

    /// Index of the first point >= hash, or 0 past the last point.
    func point(of hash: UInt32) -> Int {
        points.withUnsafeBufferPointer { points in
            var low = 0
            var high = points.count
            while low < high {
                let middle = low &+ (high &- low) >> 1
                if points[middle] < hash { low = middle &+ 1 } else { high = middle }
            }
            return low == points.count ? 0 : low
        }
    }
}

extension KetamaRing {
    /// Convenience for callers holding a String; no copy for native strings.
    public func owner(of key: String) -> Int {
        var key = key
        return key.withUTF8 { owner(of: UnsafeRawBufferPointer($0)) }
    }

    public func replicaSet(of key: String, count: Int) -> ReplicaSet {
        var key = key
        return key.withUTF8 { replicaSet(of: UnsafeRawBufferPointer($0), count: count) }
    }
}
