import Testing
@testable import CacheProxy

private func loopback(_ ports: ClosedRange<UInt16>, weights: [UInt32]? = nil) -> [RingNode] {
    ports.enumerated().map { i, port in
        RingNode(host: "127.0.0.1", port: port, weight: weights?[i] ?? 1)
    }
}

private let someKeys = (0..<3000).map { "key:\($0)" }

@Suite struct RingHashTests {
    @Test func md5ComesFromLibcrypto() {
        // RFC 1321 test vectors, read as little-endian words.
        let empty = [UInt8]().withUnsafeBytes(RingHash.md5Words)  // d41d8cd9 8f00b204 e9800998 ecf8427e
        #expect([empty.0, empty.1, empty.2, empty.3] == [0xd98c_1dd4, 0x04b2_008f, 0x9809_80e9, 0x7e42_f8ec])
        let abc = Array("abc".utf8).withUnsafeBytes(RingHash.md5)  // 90015098 3cd24fb0 ...
        #expect(abc == 0x9850_0190)
    }

    @Test func oneAtATimeMatchesLibhashkit() {
        #expect([UInt8]().withUnsafeBytes(RingHash.oneAtATime) == 0)
        #expect(Array("a".utf8).withUnsafeBytes(RingHash.oneAtATime) == 3_392_050_242)
        #expect(Array("hello".utf8).withUnsafeBytes(RingHash.oneAtATime) == 3_372_029_979)
        // Bytes >= 0x80 go in sign-extended, as C `char` does on x86-64.
        #expect(Array("é".utf8).withUnsafeBytes(RingHash.oneAtATime) == 26_298_542)
    }
}

@Suite struct RingNodeTests {
    @Test func pointKeyDropsTheDefaultPortAndPrefersTheName() {
        #expect(RingNode(host: "10.0.0.1", port: 11211).pointKey == "10.0.0.1")
        #expect(RingNode(host: "10.0.0.1", port: 11212).pointKey == "10.0.0.1:11212")
        #expect(RingNode(host: "cache-a", port: 11212, name: "east-1").pointKey == "east-1")
        #expect(RingNode(host: "cache-a", port: 11211, name: "10.0.0.1:11212").pointKey == "10.0.0.1:11212")
    }

    @Test(arguments: [KetamaRing.Mode.libmemcachedWeighted, .twemproxy, .libmemcachedClassic])
    func aNamedNodeHashesByItsNameAlone(mode: KetamaRing.Mode) throws {
        let named = try KetamaRing(nodes: [RingNode(host: "127.0.0.1", port: 31001, name: "cache-a"),
                                           RingNode(host: "127.0.0.1", port: 31002, name: "cache-b")], mode: mode)
        let byHost = try KetamaRing(nodes: [RingNode(host: "cache-a", port: 11211),
                                            RingNode(host: "cache-b", port: 11211)], mode: mode)
        let byOtherPort = try KetamaRing(nodes: [RingNode(host: "cache-a", port: 11212),
                                                 RingNode(host: "cache-b", port: 11212)], mode: mode)
        #expect(named.points == byHost.points)
        #expect(named.owners == byHost.owners)
        #expect(named.points != byOtherPort.points)
    }
}

@Suite struct RingPointTests {
    @Test(arguments: [
        ([UInt32(1), 1, 1], [160, 160, 160]),
        ([1, 2, 3], [80, 160, 240]),
        // float32 arithmetic, as in the C: exact maths would give 32, 32, 160, 288, 288
        ([1, 1, 5, 9, 9], [28, 28, 160, 288, 288]),
        ([1, 1000], [0, 316]),
        ([7], [160]),
    ])
    func weightsScalePointsLikeTheCCode(weights: [UInt32], expected: [Int]) throws {
        let nodes = loopback(31001...UInt16(31000 + weights.count), weights: weights)
        for mode in [KetamaRing.Mode.libmemcachedWeighted, .twemproxy] {
            let ring = try KetamaRing(nodes: nodes, mode: mode)
            #expect(ring.pointCounts == expected)
            #expect(ring.points.count == expected.reduce(0, +))
        }
    }

    @Test func equalWeightsLoseFourPointsAtSomeNodeCounts() throws {
        // float32 again: 25, 47, 50, 55 ... equal nodes get 156 points each.
        #expect(try KetamaRing(nodes: loopback(31001...31024)).pointCounts.allSatisfy { $0 == 160 })
        #expect(try KetamaRing(nodes: loopback(31001...31025)).pointCounts.allSatisfy { $0 == 156 })
        #expect(try KetamaRing(nodes: loopback(31001...31026)).pointCounts.allSatisfy { $0 == 160 })
    }

    @Test func classicModeHasAHundredPointsPerNode() throws {
        let ring = try KetamaRing(nodes: loopback(31001...31004), mode: .libmemcachedClassic)
        #expect(ring.pointCounts == [100, 100, 100, 100])
    }

    @Test func aNodeWithoutPointsOwnsNothing() throws {
        let ring = try KetamaRing(nodes: loopback(31001...31002, weights: [1, 1000]))
        #expect(ring.nodesOnRing == 1)
        for key in someKeys {
            #expect(ring.owner(of: key) == 1)
            #expect(Array(ring.replicaSet(of: key, count: 2)) == [1])
        }
    }

    @Test func continuumIsSorted() throws {
        let ring = try KetamaRing(nodes: loopback(31001...31010, weights: [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]))
        #expect(zip(ring.points, ring.points.dropFirst()).allSatisfy { $0 <= $1 })
    }

    @Test func twemproxyCutsPointStringsAt272Bytes() throws {
        let long = String(repeating: "x", count: 300)
        let ring = try KetamaRing(nodes: [RingNode(host: "h", port: 1, name: long)], mode: .twemproxy)
        // Every "xxx…-k" is cut to the same 272 bytes: one digest, four distinct points.
        #expect(Set(ring.points).count == 4)
        let libmemcached = try KetamaRing(nodes: [RingNode(host: long, port: 11211)])
        #expect(Set(libmemcached.points).count == 160)
    }
}

@Suite struct RingLookupTests {
    @Test func ownerIsTheFirstPointAtOrAfterTheHashWrappingAround() throws {
        let ring = try KetamaRing(nodes: loopback(31001...31005))
        let first = ring.points.first!
        let last = ring.points.last!
        #expect(ring.owner(ofHash: 0) == Int(ring.owners[0]))
        #expect(ring.owner(ofHash: first) == Int(ring.owners[0]))
        #expect(ring.owner(ofHash: first + 1) == Int(ring.owners[1]))
        #expect(ring.owner(ofHash: last) == Int(ring.owners.last!))
        #expect(last < UInt32.max)
        #expect(ring.owner(ofHash: last + 1) == Int(ring.owners[0]))
        #expect(ring.owner(ofHash: .max) == Int(ring.owners[0]))
        for i in stride(from: 0, to: ring.points.count, by: 37) {
            #expect(ring.owner(ofHash: ring.points[i]) == Int(ring.owners[i]))
        }
    }

    @Test func rawBytesAndStringLookupsAgree() throws {
        let ring = try KetamaRing(nodes: loopback(31001...31004))
        for key in someKeys.prefix(200) {
            let viaBytes = Array(key.utf8).withUnsafeBytes { ring.owner(of: $0) }
            #expect(viaBytes == ring.owner(of: key))
        }
    }

    /// The replica set by walking the continuum one point at a time, the slow way.
    private func naiveReplicas(_ ring: KetamaRing, _ key: String, _ count: Int) -> [Int] {
        let hash = Array(key.utf8).withUnsafeBytes { ring.hash(of: $0) }
        let start = ring.points.firstIndex { $0 >= hash } ?? 0
        var found: [Int] = []
        for step in 0..<ring.points.count where found.count < count {
            let node = Int(ring.owners[(start + step) % ring.points.count])
            if !found.contains(node) { found.append(node) }
        }
        return found
    }

    @Test(arguments: [KetamaRing.Mode.libmemcachedWeighted, .twemproxy, .libmemcachedClassic])
    func replicaSetsAreDistinctNodesInClockwiseOrder(mode: KetamaRing.Mode) throws {
        let weights: [UInt32] = mode == .libmemcachedClassic ? [1, 1, 1, 1, 1, 1] : [1, 3, 1, 2, 1, 5]
        let ring = try KetamaRing(nodes: loopback(31001...31006, weights: weights), mode: mode)
        for key in someKeys.prefix(1000) {
            for r in 1...6 {
                let set = ring.replicaSet(of: key, count: r)
                #expect(Array(set) == naiveReplicas(ring, key, r))
                #expect(Set(set).count == r)
                #expect(set.primary == ring.owner(of: key))
            }
        }
    }

    @Test func replicaCountIsCappedAtTheNodesOnTheRing() throws {
        let ring = try KetamaRing(nodes: loopback(31001...31003))
        #expect(ring.replicaSet(of: "k", count: 10).count == 3)
        #expect(ring.replicaSet(of: "k", count: 0).isEmpty)
        #expect(ring.replicaSet(of: "k", count: -1).isEmpty)
        let wide = try KetamaRing(nodes: loopback(31001...31012))
        #expect(wide.replicaSet(of: "k", count: 12).count == ReplicaSet.maximumReplicas)
    }

    @Test func replicasIntoCallerStorageMatchesAndGoesPastEight() throws {
        let ring = try KetamaRing(nodes: loopback(31001...31012))
        var storage = [Int](repeating: -1, count: 16)
        for key in someKeys.prefix(300) {
            let written = storage.withUnsafeMutableBufferPointer { buffer in
                Array(key.utf8).withUnsafeBytes { ring.replicas(of: $0, into: buffer) }
            }
            #expect(written == 12)
            #expect(Array(storage.prefix(written)) == naiveReplicas(ring, key, 12))
            #expect(Array(storage.prefix(8)) == Array(ring.replicaSet(of: key, count: 8)))
        }
        let none = storage.withUnsafeMutableBufferPointer { buffer in
            [UInt8]().withUnsafeBytes { ring.replicas(of: $0, into: UnsafeMutableBufferPointer(rebasing: buffer[0..<0])) }
        }
        #expect(none == 0)
    }
}

@Suite struct RingOrderTests {
    @Test(arguments: [KetamaRing.Mode.libmemcachedWeighted, .twemproxy, .libmemcachedClassic])
    func listOrderDoesNotMoveKeysWhenNoPointsTie(mode: KetamaRing.Mode) throws {
        let weights: [UInt32] = mode == .libmemcachedClassic ? [1, 1, 1, 1, 1, 1, 1] : [1, 2, 3, 1, 2, 3, 4]
        let nodes = loopback(31001...31007, weights: weights)
        let shuffled = [3, 6, 0, 5, 1, 4, 2].map { nodes[$0] }
        let a = try KetamaRing(nodes: nodes, mode: mode)
        let b = try KetamaRing(nodes: shuffled, mode: mode)
        #expect(Set(a.points).count == a.points.count)  // no ties here
        for key in someKeys {
            #expect(nodes[a.owner(of: key)] == shuffled[b.owner(of: key)])
        }
    }

    // 127.0.1.1-33 and 127.0.1.87-? share the point 2907104740 (scripts/ring-oracle/find_ties.py).
    private let tied = (a: RingNode(host: "127.0.1.1", port: 11211), b: RingNode(host: "127.0.1.87", port: 11211))
    private let tiePoint: UInt32 = 2_907_104_740

    @Test func libmemcachedBreaksTiesByListOrder() throws {
        let ab = try KetamaRing(nodes: [tied.a, tied.b])
        let ba = try KetamaRing(nodes: [tied.b, tied.a])
        #expect(ab.nodes[ab.owner(ofHash: tiePoint)] == tied.a)
        #expect(ba.nodes[ba.owner(ofHash: tiePoint)] == tied.b)
    }

    @Test func twemproxyBreaksTiesByNameLengthThenBytes() throws {
        for nodes in [[tied.a, tied.b], [tied.b, tied.a]] {
            let ring = try KetamaRing(nodes: nodes, mode: .twemproxy)
            #expect(ring.nodes[ring.owner(ofHash: tiePoint)] == tied.a)  // "127.0.1.1" is shorter
        }
        // "z940" and "a00067" share 2691946715: the shorter name wins, though "a" < "z".
        let z = RingNode(host: "127.0.0.1", port: 31001, name: "z940")
        let a = RingNode(host: "127.0.0.1", port: 31002, name: "a00067")
        for nodes in [[a, z], [z, a]] {
            let ring = try KetamaRing(nodes: nodes, mode: .twemproxy)
            #expect(ring.nodes[ring.owner(ofHash: 2_691_946_715)] == z)
        }
    }
}

@Suite struct RingRefusalTests {
    @Test func refusesListsTheLibrariesWouldRefuseOrDisagreeOn() {
        #expect(throws: RingError.noNodes) { try KetamaRing(nodes: []) }
        #expect(throws: RingError.zeroWeight(node: 1)) {
            try KetamaRing(nodes: [RingNode(host: "a", port: 1), RingNode(host: "b", port: 1, weight: 0)])
        }
        #expect(throws: RingError.duplicatePointKey(node: 1, sameAs: 0)) {
            try KetamaRing(nodes: [RingNode(host: "a", port: 11211), RingNode(host: "b", port: 2, name: "a")])
        }
        #expect(throws: RingError.weightInClassicMode(node: 0)) {
            try KetamaRing(nodes: [RingNode(host: "a", port: 1, weight: 2)], mode: .libmemcachedClassic)
        }
        #expect(throws: RingError.pointKeyTooLong(node: 0)) {
            try KetamaRing(nodes: [RingNode(host: String(repeating: "h", count: 1025), port: 1)])
        }
        #expect(throws: RingError.totalWeightTooLarge) {
            try KetamaRing(nodes: [RingNode(host: "a", port: 1, weight: .max), RingNode(host: "b", port: 1, weight: 1)])
        }
        // twemproxy has no such host limit; it cuts the point string instead.
        #expect(throws: Never.self) {
            try KetamaRing(nodes: [RingNode(host: String(repeating: "h", count: 1025), port: 1)], mode: .twemproxy)
        }
    }
}
