import CacheStorage
import Testing

@Suite("Floods and maintenance")
struct FloodTests {
    /// Value sizes from a few bytes to most of itemSizeMax, skewed small like real traffic.
    static func randomSize(_ generator: inout SeededGenerator, max: Int) -> Int {
        switch Int.random(in: 0..<100, using: &generator) {
        case 0..<60: return Int.random(in: 0...200, using: &generator)
        case 60..<85: return Int.random(in: 200...4000, using: &generator)
        case 85..<97: return Int.random(in: 4000...60_000, using: &generator)
        default: return Int.random(in: 60_000...max, using: &generator)
        }
    }

    @Test(arguments: [(UInt64(1), 1), (UInt64(2), 8), (UInt64(3), 4)])
    func randomSizeFloodKeepsBudgetAndData(seed: UInt64, shards: Int) throws {
        let limit = 6 << 20
        let store = try ItemStore(configuration: .small(6, shards: shards, itemSizeMax: 1 << 20))
        var generator = SeededGenerator(seed: seed)
        // The version each key was last written with (reads check exactly that value), or nil if deleted.
        var versions = [Int?](repeating: nil, count: 3000)
        var sizes = [Int](repeating: 0, count: 3000)
        for step in 0..<9000 {
            let key = Int.random(in: 0..<3000, using: &generator)
            let now = ServerTime(step / 100 + 1)
            switch Int.random(in: 0..<10, using: &generator) {
            case 0:
                store.delete(bytes("f\(key)"), now: now)
                versions[key] = nil
            case 1...2:
                if let version = versions[key] {
                    if store.contains(bytes("f\(key)"), now: now) {
                        #expect(store.holds(bytes("f\(key)"), patternValue(key: key, version: version, count: sizes[key]), now: now))
                    }
                }
            default:
                let size = Self.randomSize(&generator, max: (1 << 20) - 64)
                _ = try store.set(bytes("f\(key)"), patternValue(key: key, version: step, count: size), now: now).get()
                versions[key] = step
                sizes[key] = size
            }
            if step % 1000 == 0 {
                EvictionTests.expectWithinBudget(store, limit: limit)
            }
        }
        // Every key still present holds exactly its last value; deleted keys are gone.
        var present = 0
        for key in 0..<3000 {
            guard store.contains(bytes("f\(key)"), now: 200) else { continue }
            present += 1
            guard let version = versions[key] else {
                Issue.record("deleted key f\(key) came back")
                continue
            }
            #expect(store.holds(bytes("f\(key)"), patternValue(key: key, version: version, count: sizes[key]), now: 200))
        }
        let statistics = store.statistics()
        #expect(statistics.currentItems == present)
        #expect(present > 100)
        #expect(statistics.evictions > 0)
        EvictionTests.expectWithinBudget(store, limit: limit)
    }

    @Test func reclaimExpiredReclaimsAndCompacts() throws {
        let store = try ItemStore(configuration: .small(16, shards: 2))
        for index in 0..<6000 { _ = try store.set(bytes("e\(index)"), Array(repeating: 1, count: 400), expiry: 50, now: 10).get() }
        for index in 0..<300 { _ = try store.set(bytes("keep\(index)"), Array(repeating: 2, count: 400), now: 10).get() }
        for index in 0..<3 { _ = try store.set(bytes("bigexp\(index)"), Array(repeating: 3, count: 300 << 10), expiry: 50, now: 10).get() }
        var before = store.statistics()
        #expect(before.currentItems == 6303)
        #expect(store.reclaimExpired(now: 49, limit: 100_000) == 0)
        // A limit is a limit.
        #expect(store.reclaimExpired(now: 50, limit: 10) == 10)
        #expect(store.reclaimExpired(now: 50, limit: 100_000) == 5993)
        let after = store.statistics()
        #expect(after.currentItems == 300)
        #expect(after.reclaimed == 6003)
        #expect(after.expiredUnfetched == 6003)
        #expect(after.largeItems == 0)
        #expect(after.largeItemBytes == 0)
        // The segments that only held expired items went back to the pool.
        #expect(before.segmentsInUse >= 3)
        #expect(after.segmentsInUse < before.segmentsInUse)
        #expect(after.segmentsFreeResident >= before.segmentsInUse - after.segmentsInUse)
        #expect(after.compactions > 0)
        #expect(after.deadBytes < 2 * after.segmentSize)
        for index in 0..<300 { #expect(store.holds(bytes("keep\(index)"), Array(repeating: 2, count: 400), now: 60)) }
        #expect(store.validate() == nil)
        before = after
        #expect(store.reclaimExpired(now: 60, limit: 100) == 0)
    }

    @Test func reclaimCompactsDeletedSpace() throws {
        let store = try ItemStore(configuration: .small(16, shards: 1))
        for index in 0..<8000 { _ = try store.set(bytes("d\(index)"), Array(repeating: 1, count: 500)).get() }
        for index in 0..<8000 where index % 10 != 0 { store.delete(bytes("d\(index)")) }
        let before = store.statistics()
        #expect(before.deadBytes > 3_000_000)
        #expect(store.reclaimExpired(now: 2, limit: 1000) == 0)
        let after = store.statistics()
        #expect(after.deadBytes < before.deadBytes / 4)
        #expect(before.segmentsInUse >= 5)
        #expect(after.segmentsInUse <= 2)
        for index in stride(from: 0, to: 8000, by: 10) { #expect(store.contains(bytes("d\(index)"))) }
        #expect(store.validate() == nil)
    }

    @Test func setMemoryLimitShrinksAndGrows() throws {
        let store = try ItemStore(configuration: .small(16))
        for index in 0..<25_000 { _ = try store.set(bytes("m\(index)"), Array(repeating: 1, count: 500)).get() }
        _ = try store.set(bytes("large"), Array(repeating: 9, count: 200 << 10)).get()
        #expect(store.statistics().residentBytes > 12 << 20)
        store.setMemoryLimit(4 << 20)
        var statistics = store.statistics()
        #expect(statistics.memoryLimit == 4 << 20)
        #expect(statistics.residentBytes <= 4 << 20)
        #expect(statistics.bytes <= 4 << 20)
        #expect(store.arenaResidentBytes() + statistics.largeItemBytes <= 4 << 20)
        #expect(statistics.currentItems < 8000)
        #expect(store.validate() == nil)
        // Still usable at the lower budget.
        store.resetStatistics()
        for index in 0..<20_000 { _ = try store.set(bytes("n\(index)"), Array(repeating: 2, count: 500)).get() }
        statistics = store.statistics()
        #expect(statistics.residentBytesPeak <= 4 << 20)
        #expect(statistics.evictions > 10_000)
        // Grown: more fits again.
        store.setMemoryLimit(24 << 20)
        for index in 0..<40_000 { _ = try store.set(bytes("g\(index)"), Array(repeating: 3, count: 500)).get() }
        statistics = store.statistics()
        #expect(statistics.currentItems > 35_000)
        #expect(statistics.residentBytes > 16 << 20)
        #expect(statistics.residentBytesPeak <= 24 << 20)
        #expect(store.validate() == nil)
    }

    @Test func hashTableGrowsPast100kItems() throws {
        let store = try ItemStore(configuration: .small(64))
        let initialBuckets = store.statistics().hashBuckets
        for index in 0..<120_000 { _ = try store.set(bytes("h\(index)"), [UInt8(truncatingIfNeeded: index)]).get() }
        let statistics = store.statistics()
        #expect(statistics.currentItems == 120_000)
        #expect(statistics.evictions == 0)
        #expect(statistics.hashBuckets > initialBuckets)
        #expect(statistics.hashBuckets * 3 / 2 >= 120_000)
        #expect(statistics.hashTableBytes == statistics.hashBuckets * 4)
        for index in stride(from: 0, to: 120_000, by: 7) {
            #expect(store.holds(bytes("h\(index)"), [UInt8(truncatingIfNeeded: index)]))
        }
        #expect(store.validate() == nil)
    }

    @Test func itemsStayReachableWhileTheTableMovesToItsNewSize() throws {
        // One shard of 1024 buckets: doubles at 1537 items, then moves 4 old buckets per link.
        let store = try ItemStore(configuration: StorageConfiguration(memoryLimit: 16 << 20, shardCount: 1, hashPower: 10))
        for index in 0..<1536 { _ = try store.set(bytes("g\(index)"), [1]).get() }
        #expect(store.statistics().hashBuckets == 1024)
        #expect(!store.statistics().hashExpanding)
        // Mid-move (the first 100 links after the doubling move 400 of 1024 old buckets):
        // overwrite, delete and add while items live in both tables.
        for index in 1536..<1636 { _ = try store.set(bytes("g\(index)"), [2]).get() }
        #expect(store.statistics().hashBuckets == 2048)
        #expect(store.statistics().hashTableBytes == (2048 + 1024) * 4)
        #expect(store.statistics().hashExpanding)
        #expect(store.validate() == nil)
        for index in stride(from: 0, to: 1636, by: 3) { store.delete(bytes("g\(index)")) }
        for index in stride(from: 1, to: 1636, by: 3) { _ = try store.set(bytes("g\(index)"), [3]).get() }
        #expect(store.validate() == nil)
        for index in 0..<1636 {
            switch index % 3 {
            case 0: #expect(!store.contains(bytes("g\(index)")))
            case 1: #expect(store.holds(bytes("g\(index)"), [3]))
            default: #expect(store.holds(bytes("g\(index)"), [index < 1536 ? 1 : 2]))
            }
        }
        // Through several more doublings, validating as the moves go on.
        for index in 1636..<20_000 {
            _ = try store.set(bytes("g\(index)"), [4]).get()
            if index % 1500 == 0 { #expect(store.validate() == nil) }
        }
        let statistics = store.statistics()
        #expect(statistics.hashBuckets == 16384)
        #expect(statistics.currentItems == 20_000 - 546)
        for index in 1636..<20_000 { #expect(store.holds(bytes("g\(index)"), [4])) }
    }

    @Test func resetStatisticsKeepsGauges() throws {
        let store = try ItemStore(configuration: .small(8))
        for index in 0..<10 { _ = try store.set(bytes("r\(index)"), [1]).get() }
        store.resetStatistics()
        let statistics = store.statistics()
        #expect(statistics.totalItems == 0)
        #expect(statistics.currentItems == 10)
        #expect(statistics.bytes == 10 * 40)
    }
}
