// How a node list becomes points: the counts, the strings hashed, the order of
// ties. The formulas are in the comment at the top of KetamaRing.swift.

extension KetamaRing {
    static let classicPointsPerNode = 100
    /// nutcracker formats point strings into a 273-byte buffer with its NUL.
    static let twemproxyPointTextLimit = 272
    /// libmemcached's MEMCACHED_NI_MAXHOST less the NUL: longer host names are refused.
    static let libmemcachedHostLimit = 1024

    /// Points a node gets in the weighted modes. Single-precision on purpose:
    /// libmemcached and twemproxy both compute this in `float`, and rounding
    /// there moves whole groups of 4 points (weights 1,1,5,9,9 give 28, not 32).
    static func weightedPointCount(weight: UInt32, totalWeight: UInt64, nodeCount: Int) -> Int {
        let pct = Float(weight) / Float(totalWeight)
        let scaled = pct * 160 / 4 * Float(nodeCount)
        // The C adds 1e-10 in double, then casts back to float before flooring.
        let floored = Float(Double(scaled) + 0.0000000001).rounded(.down)
        return Int(floored) * 4
    }

    /// "<base>-<k>" into `text`, cut to `limit` bytes when there is one.
    static func pointText(_ text: inout [UInt8], _ base: [UInt8], _ k: Int, limit: Int?) {
        text.removeAll(keepingCapacity: true)
        text.append(contentsOf: base)
        text.append(UInt8(ascii: "-"))
        text.append(contentsOf: String(k).utf8)
        if let limit, text.count > limit {
            text.removeLast(text.count - limit)
        }
    }

    /// For each node, its place in the order that breaks ties between equal
    /// points: list order for libmemcached; twemproxy's server order, which is
    /// its names sorted by length and then bytes (`string_compare`).
    static func tieRanks(_ nodes: [RingNode], _ mode: Mode) -> [Int] {
        guard mode == .twemproxy else { return Array(nodes.indices) }
        let keys = nodes.map { Array($0.pointKey.utf8) }
        let order = nodes.indices.sorted { a, b in
            if keys[a].count != keys[b].count { return keys[a].count < keys[b].count }
            return keys[a].lexicographicallyPrecedes(keys[b])
        }
        var ranks = [Int](repeating: 0, count: nodes.count)
        for (rank, node) in order.enumerated() { ranks[node] = rank }
        return ranks
    }

    static func validate(_ nodes: [RingNode], _ mode: Mode) throws(RingError) {
        guard !nodes.isEmpty else { throw .noNodes }
        var firstWithKey: [String: Int] = [:]
        var totalWeight: UInt64 = 0
        for (index, node) in nodes.enumerated() {
            guard node.weight > 0 else { throw .zeroWeight(node: index) }
            if mode == .libmemcachedClassic, node.weight != 1 { throw .weightInClassicMode(node: index) }
            if mode != .twemproxy, (node.name ?? node.host).utf8.count > libmemcachedHostLimit {
                throw .pointKeyTooLong(node: index)
            }
            if let first = firstWithKey[node.pointKey] { throw .duplicatePointKey(node: index, sameAs: first) }
            firstWithKey[node.pointKey] = index
            totalWeight += UInt64(node.weight)
        }
        guard totalWeight <= UInt64(UInt32.max) else { throw .totalWeightTooLarge }
    }
}
