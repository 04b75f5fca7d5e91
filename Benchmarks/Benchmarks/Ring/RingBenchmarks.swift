// KetamaRing lookups as the proxy routes every key: owner(of:) and
// replicaSet(of:count: 2) over rings of 3 and 30 nodes (libmemcached-weighted
// ketama: MD5 of the key, binary search over 160 points per node), 32-byte keys in a
// shuffled order; `hash-only` is the key's MD5 alone. Time is per lookup (scalingFactor .kilo). Lookups must not
// allocate: Thresholds/RingBenchmarks.*.p90.json hold mallocCountTotal = 0.

import Benchmark
import BenchmarkSupport
import CacheProxy

func makeRing(nodes count: Int) -> KetamaRing {
    // Names only: the ring hashes them, nothing connects to them.
    let nodes = (0..<count).map { RingNode(host: "cache-\($0).memcluster.test", port: 11211) }
    do {
        return try KetamaRing(nodes: nodes)
    } catch {
        benchmarkInputFailure("ring of \(count) nodes: \(error)")
    }
}

let keys = KeySet(count: 100_000, length: 32)
let order = AccessOrder(count: keys.count)

/// The next position in `order`, kept across samples.
final class Cursor: @unchecked Sendable {
    var position = 0
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .zeroAllocation

    // The key's hash alone (MD5 of 32 bytes), to see what the ring search adds to it.
    let hashRing = makeRing(nodes: 3)
    let hashCursor = Cursor()
    Benchmark("hash-only") { benchmark in
        var position = hashCursor.position
        var sum: UInt32 = 0
        for _ in benchmark.scaledIterations {
            sum &+= hashRing.hash(of: keys.key(order[position]))
            position = position &+ 1 == keys.count ? 0 : position &+ 1
        }
        hashCursor.position = position
        blackHole(sum)
    }

    for nodeCount in [3, 30] {
        let ring = makeRing(nodes: nodeCount)
        // Every node must own some keys, and two replicas must be distinct.
        var owned = Set<Int>()
        for index in 0..<1000 {
            owned.insert(ring.owner(of: keys.key(index)))
            let replicas = ring.replicaSet(of: keys.key(index), count: 2)
            if replicas.count != 2 || replicas[0] == replicas[1] || replicas[0] != ring.owner(of: keys.key(index)) {
                benchmarkInputFailure("replica set \(replicas) for key \(index)")
            }
        }
        if owned.count != nodeCount { benchmarkInputFailure("only \(owned.count) of \(nodeCount) nodes own keys") }

        let ownerCursor = Cursor()
        Benchmark("owner-\(nodeCount)-nodes") { benchmark in
            var position = ownerCursor.position
            var sum = 0
            for _ in benchmark.scaledIterations {
                sum &+= ring.owner(of: keys.key(order[position]))
                position = position &+ 1 == keys.count ? 0 : position &+ 1
            }
            ownerCursor.position = position
            blackHole(sum)
        }

        let replicaCursor = Cursor()
        Benchmark("replicaSet2-\(nodeCount)-nodes") { benchmark in
            var position = replicaCursor.position
            var sum = 0
            for _ in benchmark.scaledIterations {
                let replicas = ring.replicaSet(of: keys.key(order[position]), count: 2)
                sum &+= replicas[0] &+ replicas[1]
                position = position &+ 1 == keys.count ? 0 : position &+ 1
            }
            replicaCursor.position = position
            blackHole(sum)
        }
    }
}
