import CacheStorage
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing

/// `ItemStore.walk`: the cursor the node's metadump lists keys with.
@Suite("Walking every item")
struct WalkTests {
    /// Walks the whole store a few buckets at a time, calling `between` after
    /// each step; returns every key seen, in order, repeats included.
    static func walkAll(_ store: ItemStore, now: ServerTime = 1, buckets: Int = 4,
                        between: (Int) -> Void = { _ in }) -> [[UInt8]] {
        var cursor = StoreCursor()
        var keys: [[UInt8]] = []
        var step = 0
        while !cursor.isFinished {
            store.walk(&cursor, now: now, buckets: buckets) { keys.append(Array($0.key)) }
            between(step)
            step += 1
        }
        return keys
    }

    static func counts(_ keys: [[UInt8]]) -> [[UInt8]: Int] {
        keys.reduce(into: [:]) { $0[$1, default: 0] += 1 }
    }

    @Test func everyItemOnceAcrossShards() throws {
        let store = try ItemStore(configuration: .small(32))
        for index in 0..<5000 { store.set(bytes("key-\(index)"), bytes("v\(index)")) }
        // Large items (their own mappings) too.
        for index in 0..<4 { store.set(bytes("large-\(index)"), [UInt8](repeating: 7, count: 200_000)) }
        let seen = Self.counts(Self.walkAll(store))
        #expect(seen.count == 5004)
        #expect(seen.values.allSatisfy { $0 == 1 })
        #expect(seen[bytes("large-3")] == 1)
        // The walk changes nothing a get would see.
        #expect(store.validate() == nil)
    }

    @Test func emptyStoreFinishes() throws {
        let store = try ItemStore(configuration: .small(8))
        var cursor = StoreCursor()
        var steps = 0
        while !cursor.isFinished && steps < 1_000_000 {
            #expect(store.walk(&cursor, now: 1, buckets: 64) { _ in } == 0)
            steps += 1
        }
        #expect(cursor.isFinished)
        #expect(store.walk(&cursor, now: 1) { _ in Issue.record("visited after the end") } == 0)
    }

    @Test func expiredAndFlushedItemsAreLeftOut() throws {
        let store = try ItemStore(configuration: .small(8))
        store.set(bytes("old"), bytes("1"), now: 1)
        store.flush(boundary: 2, now: 2)
        store.set(bytes("kept"), bytes("2"), now: 2)
        store.set(bytes("expires"), bytes("3"), expiry: 5, now: 2)
        #expect(Set(Self.walkAll(store, now: 4)) == [bytes("kept"), bytes("expires")])
        #expect(Self.walkAll(store, now: 5) == [bytes("kept")])
        // Left out, not removed: the walk is read-only.
        #expect(store.statistics().currentItems == 3)
    }

    /// Tables that double several times between two steps (64 buckets a shard
    /// at first, then thousands) still give every item present from the start
    /// exactly once, and every item added during the walk at most once.
    @Test func tableGrowthDuringTheWalk() throws {
        let store = try ItemStore(configuration: StorageConfiguration(memoryLimit: 64 << 20, shardCount: 4, hashPower: 1))
        for index in 0..<1000 { store.set(bytes("before-\(index)"), bytes("x")) }
        var added = 0
        let seen = Self.counts(Self.walkAll(store, buckets: 1) { _ in
            for _ in 0..<40 where added < 60_000 {
                store.set(bytes("during-\(added)"), bytes("y"))
                added += 1
            }
        })
        #expect(added == 60_000)
        #expect(store.statistics().hashBuckets >= 32_768)
        for index in 0..<1000 { #expect(seen[bytes("before-\(index)")] == 1) }
        #expect(seen.values.allSatisfy { $0 == 1 })
        #expect(store.validate() == nil)
    }

    /// Another thread inserts new keys (the tables double under the walk),
    /// overwrites and deletes them, and runs the background reclaimer, which
    /// compacts the segments that churn leaves mostly dead (moving stable
    /// items elsewhere in memory), all while the walk goes on: every stable
    /// item once, no item twice.
    @Test func concurrentInsertsDeletesAndCompaction() throws {
        let store = try ItemStore(configuration: StorageConfiguration(memoryLimit: 256 << 20, shardCount: 8, hashPower: 4))
        let stable = 20_000
        for index in 0..<stable { store.set(bytes("stable-\(index)"), patternValue(key: index, version: 0, count: 40 + index % 200)) }
        let bucketsBefore = store.statistics().hashBuckets
        let walking = Atomic<Bool>(true)
        let churned = Atomic<Int>(0)
        let missing = Atomic<Int>(-1)
        let repeated = Atomic<Int>(-1)
        runThreads(2) { thread in
            if thread == 1 {
                var next = 0
                while walking.load(ordering: .relaxed) && next < 100_000 {
                    for _ in 0..<200 {
                        store.set(bytes("churn-\(next)"), patternValue(key: next, version: 0, count: 100))
                        if next % 3 == 0 { store.set(bytes("churn-\(next / 2)"), patternValue(key: next, version: 1, count: 60)) }
                        if next % 4 == 0 { store.delete(bytes("churn-\(next / 3)")) }
                        next += 1
                    }
                    _ = store.reclaimExpired(now: 1, limit: 10_000)
                    churned.store(next, ordering: .relaxed)
                }
                churned.store(-1, ordering: .relaxed)
                return
            }
            while churned.load(ordering: .relaxed) == 0 {}
            // One churn batch every 32 steps, so the two interleave all along.
            let seen = Self.counts(Self.walkAll(store, buckets: 1) { step in
                guard step % 32 == 0 else { return }
                let before = churned.load(ordering: .relaxed)
                while before != -1 && churned.load(ordering: .relaxed) == before { sched_yield() }
            })
            walking.store(false, ordering: .relaxed)
            missing.store((0..<stable).count { seen[bytes("stable-\($0)")] != 1 }, ordering: .relaxed)
            repeated.store(seen.values.count { $0 != 1 }, ordering: .relaxed)
        }
        #expect(missing.load(ordering: .relaxed) == 0)
        #expect(repeated.load(ordering: .relaxed) == 0)
        // The churn did overlap the walk: the tables grew meanwhile.
        #expect(store.statistics().hashBuckets > bucketsBefore)
        #expect(store.validate() == nil)
    }
}
