import CacheStorage
import Testing

@Suite("Eviction under a budget")
struct EvictionTests {
    /// Checks the budget promises: item bytes, charged bytes and real resident pages all within the limit.
    static func expectWithinBudget(_ store: ItemStore, limit: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        let statistics = store.statistics()
        #expect(statistics.bytes <= limit, sourceLocation: sourceLocation)
        #expect(statistics.residentBytes <= limit, sourceLocation: sourceLocation)
        #expect(statistics.residentBytesPeak <= limit, sourceLocation: sourceLocation)
        #expect(store.arenaResidentBytes() + statistics.largeItemBytes <= limit, sourceLocation: sourceLocation)
        #expect(store.validate() == nil, sourceLocation: sourceLocation)
    }

    @Test(arguments: [1, 8])
    func hotItemsSurviveColdOnesGo(shards: Int) throws {
        let limit = 4 << 20
        let store = try ItemStore(configuration: .small(4, shards: shards))
        let hot = (0..<200).map { bytes("hot-\($0)") }
        for key in hot { _ = try store.set(key, patternValue(key: key.count, version: 1, count: 500)).get() }
        // 12 MiB of cold writes through a 4 MiB cache, reading the hot set as we go.
        for index in 0..<24_000 {
            _ = try store.set(bytes("cold-\(index)"), patternValue(key: index, version: 0, count: 500), now: 2).get()
            if index % 500 == 0 {
                for key in hot { #expect(store.value(key, now: 2) != nil) }
            }
        }
        for key in hot { #expect(store.holds(key, patternValue(key: key.count, version: 1, count: 500))) }
        var coldPresent = 0
        for index in 0..<24_000 where store.value(bytes("cold-\(index)"), bump: false) != nil { coldPresent += 1 }
        // About 4 MiB of 536-byte records fit; the first cold ones are long gone.
        #expect(coldPresent > 3000 && coldPresent < 8000)
        #expect(!store.contains(bytes("cold-0")))
        #expect(store.contains(bytes("cold-23999")))
        let statistics = store.statistics()
        #expect(statistics.evictions >= 24_000 - coldPresent - 10)
        #expect(statistics.evictedUnfetched == statistics.evictions)
        #expect(statistics.itemsRetained > 0)
        #expect(statistics.currentItems == 200 + coldPresent)
        Self.expectWithinBudget(store, limit: limit)
    }

    /// A read set bigger than half the cache: every item read since its last
    /// pass stays, however many of a segment's items were read.
    @Test func aLargeReadSetStays() throws {
        let store = try ItemStore(configuration: .small(4, shards: 1))
        // About 2.6 MiB of read items in a 4 MiB cache.
        let read = (0..<5000).map { bytes("read-\($0)") }
        for (index, key) in read.enumerated() { _ = try store.set(key, patternValue(key: index, version: 1, count: 500)).get() }
        for index in 0..<24_000 {
            if index % 1000 == 0 {
                for key in read { _ = store.value(key, now: 2) }
            }
            _ = try store.set(bytes("cold-\(index)"), patternValue(key: index, version: 0, count: 500), now: 2).get()
        }
        let intact = read.indices.filter { store.holds(read[$0], patternValue(key: $0, version: 1, count: 500)) }.count
        #expect(intact == read.count)
        #expect(!store.contains(bytes("cold-0")))
        Self.expectWithinBudget(store, limit: 4 << 20)
    }

    /// Records bigger than the shard's mean go to segments of their own, which
    /// passes come to sooner: an unread big item leaves long before an unread
    /// small one written at the same time (docs/eviction.md).
    @Test func unreadBigItemsLeaveBeforeUnreadSmallOnes() throws {
        let store = try ItemStore(configuration: .small(4, shards: 1))
        func writeMix(_ prefix: String, rounds: Int) throws -> (small: [[UInt8]], big: [[UInt8]]) {
            var small: [[UInt8]] = []
            var big: [[UInt8]] = []
            for round in 0..<rounds {
                for index in 0..<10 {
                    small.append(bytes("\(prefix)-small-\(round)-\(index)"))
                    _ = try store.set(small.last!, Array(repeating: 1, count: 100)).get()
                }
                big.append(bytes("\(prefix)-big-\(round)"))
                _ = try store.set(big.last!, Array(repeating: 2, count: 4000)).get()
            }
            return (small, big)
        }
        func present(_ keys: [[UInt8]]) -> Int { keys.filter { store.contains($0, now: 1) }.count }
        // 300 rounds of about 5.6 KB, then 1.5 times the cache of the same mix.
        let first = try writeMix("first", rounds: 300)
        let later = try writeMix("later", rounds: 1100)
        #expect(store.statistics().evictions > 0)
        #expect(present(first.small) == first.small.count)
        #expect(present(first.big) == 0)
        // Of the later ones, the small are all there; the big only from the last rounds.
        #expect(present(later.small) == later.small.count)
        #expect(present(later.big) < later.big.count / 2)
        #expect(store.validate() == nil)
        Self.expectWithinBudget(store, limit: 4 << 20)
    }

    /// A big item read since its last pass stays like a small one.
    @Test func readBigItemsStay() throws {
        let store = try ItemStore(configuration: .small(4, shards: 1))
        let big = (0..<100).map { bytes("big-\($0)") }
        for key in big { _ = try store.set(key, Array(repeating: 2, count: 4000)).get() }
        var cold = 0
        for _ in 0..<20 {
            for key in big { #expect(store.value(key, now: 2) != nil) }
            // Half a cache of new small and big records, unread.
            for _ in 0..<200 {
                for _ in 0..<10 { _ = try store.set(bytes("cold-\(cold)"), Array(repeating: 1, count: 100), now: 2).get(); cold += 1 }
                _ = try store.set(bytes("cold-\(cold)"), Array(repeating: 3, count: 4000), now: 2).get()
                cold += 1
            }
        }
        #expect(big.filter { store.contains($0, now: 2) }.count == big.count)
        #expect(store.statistics().evictions > 0)
        #expect(store.validate() == nil)
    }

    /// Every item read: a store that needs room keeps them through a few
    /// passes only, then frees half a segment, instead of walking the cache.
    @Test func aStoreWalksFewSegmentsWhenEverythingWasRead() throws {
        let store = try ItemStore(configuration: .small(64, shards: 1))   // 64 segments of 1 MiB
        var written = 0
        while store.statistics().evictions == 0 {
            _ = try store.set(bytes("k-\(written)"), Array(repeating: 1, count: 1000)).get()
            written += 1
        }
        for index in 0..<written { _ = store.value(bytes("k-\(index)"), now: 2) }
        // The first store that has to make room: its passes, all in one call.
        var passes = 0
        for index in 0..<5000 where passes == 0 {
            let before = store.statistics().compactions
            _ = try store.set(bytes("new-\(index)"), Array(repeating: 2, count: 1000), now: 2).get()
            passes = store.statistics().compactions - before
        }
        #expect(passes > 1 && passes <= 9)
        Self.expectWithinBudget(store, limit: 64 << 20)
    }

    @Test func evictionsOffRefusesWhenFull() throws {
        let store = try ItemStore(configuration: .small(2, shards: 1, evictions: false))
        var stored = 0
        var refused = false
        for index in 0..<10_000 {
            switch store.set(bytes("k\(index)"), Array(repeating: 7, count: 1000)) {
            case .success: stored += 1
            case .failure(let failure):
                #expect(failure == .outOfMemory)
                refused = true
            }
            if refused { break }
        }
        #expect(refused)
        #expect(stored > 1500 && stored < 2100) // 2 MiB / 1040-byte records
        let statistics = store.statistics()
        #expect(statistics.evictions == 0)
        #expect(statistics.currentItems == stored)
        for index in 0..<stored { #expect(store.value(bytes("k\(index)"), bump: false) != nil) }
        // Deleting makes room again without evicting anything (dead space is compacted).
        for index in 0..<stored / 2 { store.delete(bytes("k\(index)")) }
        for index in 0..<stored / 4 {
            _ = try store.set(bytes("again-\(index)"), Array(repeating: 8, count: 1000)).get()
        }
        for index in stored / 2..<stored { #expect(store.value(bytes("k\(index)"), bump: false) != nil) }
        #expect(store.statistics().evictions == 0)
        Self.expectWithinBudget(store, limit: 2 << 20)
    }

    @Test func expiredItemsAreReclaimedBeforeLiveOnesAreEvicted() throws {
        let store = try ItemStore(configuration: .small(2, shards: 1))
        for index in 0..<1500 { _ = try store.set(bytes("short-\(index)"), Array(repeating: 1, count: 1000), expiry: 50, now: 10).get() }
        for index in 0..<6000 { _ = try store.set(bytes("new-\(index)"), Array(repeating: 2, count: 100), now: 60).get() }
        let statistics = store.statistics()
        #expect(statistics.reclaimed > 0)
        #expect(statistics.expiredUnfetched == statistics.reclaimed)
        #expect(statistics.evictions == 0)
        for index in 0..<6000 { #expect(store.value(bytes("new-\(index)"), now: 60) != nil) }
        Self.expectWithinBudget(store, limit: 2 << 20)
    }

    @Test func preservingIsHonouredUnderPressure() throws {
        let limit = 1 << 20
        let store = try ItemStore(configuration: .small(1, shards: 1))
        let key = bytes("appended")
        var expected = patternValue(key: 1, version: 1, count: 100)
        _ = try store.set(key, expected).get()
        // The appended item sits in the oldest segment; each append copies it while the
        // cache is full of cold items, so the allocation must evict around it.
        for round in 0..<60 {
            for index in 0..<200 { _ = try store.set(bytes("filler-\(round)-\(index)"), Array(repeating: 3, count: 600), now: 2).get() }
            let suffix = [UInt8(truncatingIfNeeded: round), 0xEE]
            guard case .success? = store.append(key, suffix, now: 2) else {
                Issue.record("append failed in round \(round)")
                return
            }
            expected += suffix
            #expect(store.value(key, now: 2, bump: false) == expected)
        }
        #expect(store.statistics().evictions > 0)
        Self.expectWithinBudget(store, limit: limit)
    }

    @Test func preservedItemIsNeitherMovedNorEvicted() throws {
        let store = try ItemStore(configuration: .small(1, shards: 1))
        let key = bytes("pinned")
        let original = patternValue(key: 9, version: 9, count: 3000)
        _ = try store.set(key, original).get()
        key.withUnsafeBytes { keyBytes in
            let hash = ItemStore.hash(keyBytes)
            store.withShard(hash: hash) { shard in
                guard case .hit(let pinned) = shard.lookup(key: keyBytes, hash: hash, now: 2, bump: false) else {
                    Issue.record("miss")
                    return
                }
                let address = pinned.value.baseAddress
                // Several budgets' worth of allocations inside one closure, all preserving the item
                // (one shard, so every key belongs to the locked part).
                for index in 0..<3000 {
                    let other = Array(bytes("o\(index)"))
                    other.withUnsafeBytes { otherKey in
                        let otherHash = ItemStore.hash(otherKey)
                        if case .success(let item) = shard.allocate(key: otherKey, valueLength: 1000, clientFlags: 0, expiry: 0, now: 2, preserving: pinned) {
                            shard.link(item, hash: otherHash, now: 2)
                        }
                    }
                    #expect(pinned.value.baseAddress == address)
                }
                #expect(Array(pinned.value) == original)
            }
        }
        #expect(store.value(key) == original)
        #expect(store.validate() == nil)
    }
}
