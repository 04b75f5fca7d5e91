import CacheStorage
import Testing

@Suite("Large items")
struct LargeItemTests {
    @Test func storeReadAndDeleteUpToItemSizeMax() throws {
        let limit = 16 << 20
        let store = try ItemStore(configuration: .small(16, itemSizeMax: 4 << 20))
        let threshold = store.statistics().largeItemThreshold
        #expect(threshold == store.statistics().segmentSize / 8)
        let sizes = [threshold - 40, threshold + 1, 1 << 20, (4 << 20) - 32 - 5]
        for (index, size) in sizes.enumerated() {
            _ = try store.set(bytes("big-\(index)"), patternValue(key: index, version: 0, count: size)).get()
        }
        for (index, size) in sizes.enumerated() {
            #expect(store.holds(bytes("big-\(index)"), patternValue(key: index, version: 0, count: size)))
        }
        #expect(throws: AllocationFailure.tooLarge) { try store.set(bytes("big-4"), Array(repeating: 0, count: 4 << 20)).get() }
        var statistics = store.statistics()
        #expect(statistics.largeItems == 3)
        #expect(statistics.currentItems == 4)
        // Page-rounded mappings: 16-byte prefix + record.
        #expect(statistics.largeItemBytes >= (1 << 20) + (4 << 20) + threshold)
        EvictionTests.expectWithinBudget(store, limit: limit)
        for index in 0..<sizes.count { store.delete(bytes("big-\(index)")) }
        statistics = store.statistics()
        #expect(statistics.largeItems == 0)
        #expect(statistics.largeItemBytes == 0)
        #expect(statistics.currentItems == 0)
        #expect(statistics.bytes == 0)
        #expect(store.validate() == nil)
    }

    @Test func largeItemsAreEvictedAndTheirMemoryReturned() throws {
        let limit = 16 << 20
        let store = try ItemStore(configuration: .small(16, itemSizeMax: 2 << 20))
        for index in 0..<60 {
            _ = try store.set(bytes("mb-\(index)"), patternValue(key: index, version: 1, count: 1 << 20), now: 2).get()
            EvictionTests.expectWithinBudget(store, limit: limit)
        }
        var present = 0
        for index in 0..<60 {
            if store.contains(bytes("mb-\(index)")) {
                #expect(store.holds(bytes("mb-\(index)"), patternValue(key: index, version: 1, count: 1 << 20), bump: false))
                present += 1
            }
        }
        #expect(present >= 10 && present <= 15)
        #expect(store.contains(bytes("mb-59")))
        let statistics = store.statistics()
        #expect(statistics.evictions == 60 - present)
        #expect(statistics.largeItems == present)
    }

    @Test func hotLargeItemSurvivesAFloodOfSmallOnes() throws {
        let store = try ItemStore(configuration: .small(4, shards: 1))
        let big = patternValue(key: 77, version: 0, count: 700 << 10)
        _ = try store.set(bytes("big"), big).get()
        for index in 0..<30_000 {
            _ = try store.set(bytes("s\(index)"), Array(repeating: 1, count: 200), now: 2).get()
            if index % 2000 == 0 { #expect(store.get(bytes("big"), now: 2) != .miss) }
        }
        #expect(store.holds(bytes("big"), big))
        EvictionTests.expectWithinBudget(store, limit: 4 << 20)
    }

    @Test func replacingALargeItemFreesTheOldMapping() throws {
        let store = try ItemStore(configuration: .small(8))
        for version in 0..<40 {
            _ = try store.set(bytes("same"), patternValue(key: 1, version: version, count: 600 << 10)).get()
        }
        let statistics = store.statistics()
        #expect(statistics.largeItems == 1)
        #expect(statistics.largeItemBytes == ((16 + 32 + 4 + (600 << 10) + 4095) & ~4095))
        #expect(store.holds(bytes("same"), patternValue(key: 1, version: 39, count: 600 << 10)))
        EvictionTests.expectWithinBudget(store, limit: 8 << 20)
    }

    @Test func largeItemsWithEvictionsOff() throws {
        let store = try ItemStore(configuration: .small(4, shards: 1, evictions: false))
        var stored = 0
        while case .success = store.set(bytes("l\(stored)"), Array(repeating: 5, count: 500 << 10)) { stored += 1 }
        #expect(stored >= 6 && stored <= 8)
        #expect(store.statistics().evictions == 0)
        store.delete(bytes("l0"))
        _ = try store.set(bytes("again"), Array(repeating: 6, count: 500 << 10)).get()
        EvictionTests.expectWithinBudget(store, limit: 4 << 20)
    }
}
