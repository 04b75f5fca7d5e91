import CacheStorage
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing

@Suite("Several threads")
struct ConcurrencyTests {
    /// memcached's incr, done the way the node does it: read, allocate a new item
    /// preserving the old one, link; all under the shard lock.
    static func increment(_ store: ItemStore, _ key: [UInt8], now: ServerTime) -> Bool {
        key.withUnsafeBytes { keyBytes in
            let hash = ItemStore.hash(keyBytes)
            return store.withShard(hash: hash) { shard in
                var current: UInt64 = 0
                var old: ItemRef?
                if case .hit(let item) = shard.lookup(key: keyBytes, hash: hash, now: now) {
                    current = item.value.loadUnaligned(as: UInt64.self)
                    old = item
                }
                guard case .success(let item) = shard.allocate(key: keyBytes, valueLength: 8, clientFlags: 0, expiry: 0, now: now, preserving: old) else {
                    return false
                }
                item.value.storeBytes(of: current + 1, as: UInt64.self)
                shard.link(item, hash: hash, now: now)
                return true
            }
        }
    }

    static func counter(_ store: ItemStore, _ key: [UInt8]) -> UInt64? {
        store.value(key).map { $0.withUnsafeBytes { $0.load(as: UInt64.self) } }
    }

    @Test func sharedCountersAreExact() throws {
        let store = try ItemStore(configuration: .small(32))
        let failures = Atomic<Int>(0)
        runThreads(4) { _ in
            for round in 0..<2500 {
                if !Self.increment(store, bytes("counter-\(round % 16)"), now: 1) {
                    failures.add(1, ordering: .relaxed)
                }
            }
        }
        #expect(failures.load(ordering: .relaxed) == 0)
        var total: UInt64 = 0
        for index in 0..<16 { total += Self.counter(store, bytes("counter-\(index)")) ?? 0 }
        #expect(total == 10_000)
        // 2500 rounds over 16 keys: keys 0...3 get 157 increments per thread, the others 156.
        #expect(Self.counter(store, bytes("counter-0")) == 628)
        #expect(Self.counter(store, bytes("counter-15")) == 624)
        #expect(store.validate() == nil)
    }

    @Test func ownKeysStayConsistentUnderEvictionPressure() throws {
        let limit = 4 << 20
        let store = try ItemStore(configuration: .small(4))
        let corrupt = Atomic<Int>(0)
        let failures = Atomic<Int>(0)
        runThreads(4) { thread in
            var generator = SeededGenerator(seed: UInt64(thread + 10))
            var versions = [Int](repeating: -1, count: 500)
            for step in 0..<6000 {
                let key = Int.random(in: 0..<500, using: &generator)
                let name = bytes("t\(thread)-\(key)")
                let size = Int.random(in: 1...3000, using: &generator)
                if Int.random(in: 0..<3, using: &generator) == 0, versions[key] >= 0 {
                    // Present or evicted: but if present, exactly the last value written.
                    let expected = patternValue(key: thread * 1000 + key, version: versions[key], count: (versions[key] % 3000) + 1)
                    if store.matches(name, expected) == false { corrupt.add(1, ordering: .relaxed) }
                } else {
                    let version = step * 3000 + size - 1
                    if case .success = store.set(name, patternValue(key: thread * 1000 + key, version: version, count: size)) {
                        versions[key] = version
                    } else {
                        failures.add(1, ordering: .relaxed)
                    }
                }
                if step % 200 == 0 { _ = Self.increment(store, bytes("shared"), now: 1) }
            }
        }
        #expect(corrupt.load(ordering: .relaxed) == 0)
        #expect(failures.load(ordering: .relaxed) == 0)
        let statistics = store.statistics()
        #expect(statistics.evictions > 0)
        #expect(statistics.residentBytesPeak <= limit)
        EvictionTests.expectWithinBudget(store, limit: limit)
    }

    @Test func readersWritersAndReclaimerTogether() throws {
        let store = try ItemStore(configuration: .small(32, itemSizeMax: 512 << 10))
        let misses = Atomic<Int>(0)
        let writersDone = Atomic<Int>(0)
        for index in 0..<1000 { _ = try store.set(bytes("stable-\(index)"), patternValue(key: index, version: 0, count: 100)).get() }
        runThreads(4) { thread in
            switch thread {
            case 0:
                // The node's timer thread, running until the writers are done.
                var second: ServerTime = 1
                while writersDone.load(ordering: .acquiring) < 2 {
                    _ = store.reclaimExpired(now: second, limit: 200)
                    second = min(second + 1, 300)
                }
            case 1:
                for step in 0..<5000 {
                    let key = step % 1000
                    if !store.holds(bytes("stable-\(key)"), patternValue(key: key, version: 0, count: 100), now: ServerTime(step / 20 + 1)) {
                        misses.add(1, ordering: .relaxed)
                    }
                }
            default:
                for step in 0..<1500 {
                    let now = ServerTime(step / 5 + 1)
                    let size = step % 50 == 0 ? 200 << 10 : 300
                    _ = store.set(bytes("temp-\(thread)-\(step)"), patternValue(key: step, version: thread, count: size), expiry: now + 3, now: now)
                }
                writersDone.add(1, ordering: .releasing)
            }
        }
        // Everything written fits in the budget (the big temporary items total 12 MiB),
        // so nothing is evicted and no stable item may go missing.
        #expect(store.statistics().evictions == 0)
        #expect(misses.load(ordering: .relaxed) == 0)
        // Every temporary item has expired by t=400: one more pass leaves only the stable ones.
        _ = store.reclaimExpired(now: 400, limit: 100_000)
        let statistics = store.statistics()
        #expect(statistics.currentItems == 1000)
        #expect(statistics.reclaimed == 3000)
        #expect(statistics.largeItems == 0)
        #expect(store.validate() == nil)
    }

    /// Tiny budget, eight shards of four 64 KiB segments, large items from 8 KiB:
    /// threads constantly take segments and budget from each other's shards.
    @Test func tinyBudgetMixedSizesFromFourThreads() throws {
        let limit = 2 << 20
        let store = try ItemStore(configuration: StorageConfiguration(memoryLimit: limit, itemSizeMax: 256 << 10))
        #expect(store.statistics().shards == 8)
        #expect(store.statistics().largeItemThreshold == 8 << 10)
        let corrupt = Atomic<Int>(0)
        runThreads(4) { thread in
            var generator = SeededGenerator(seed: UInt64(thread) &+ 99)
            var versions = [Int](repeating: -1, count: 200)
            var sizes = [Int](repeating: 0, count: 200)
            let steps = getenv("MEMCLUSTER_STRESS") != nil ? 200_000 : 3000
            for step in 0..<steps {
                let key = Int.random(in: 0..<200, using: &generator)
                let name = bytes("x\(thread)-\(key)")
                let now = ServerTime(step / 50 + 1)
                switch Int.random(in: 0..<10, using: &generator) {
                case 0:
                    store.delete(name, now: now)
                    versions[key] = -1
                case 1:
                    // Appends keep the old item pinned while making room.
                    if versions[key] >= 0, case .success? = store.append(name, [UInt8(truncatingIfNeeded: step)], now: now) {
                        versions[key] = -1 // value no longer matches the pattern; stop checking it
                    }
                case 2...4:
                    if versions[key] >= 0,
                       store.matches(name, patternValue(key: thread * 1000 + key, version: versions[key], count: sizes[key]), now: now) == false {
                        corrupt.add(1, ordering: .relaxed)
                    }
                default:
                    let size = Int.random(in: 0..<10, using: &generator) == 0
                        ? Int.random(in: 8000...200_000, using: &generator) : Int.random(in: 1...2000, using: &generator)
                    if case .success = store.set(name, patternValue(key: thread * 1000 + key, version: step, count: size),
                                                 expiry: step % 7 == 0 ? now + 2 : 0, now: now) {
                        versions[key] = step
                        sizes[key] = size
                    }
                }
            }
        }
        #expect(corrupt.load(ordering: .relaxed) == 0)
        let statistics = store.statistics()
        #expect(statistics.evictions > 0)
        #expect(statistics.residentBytesPeak <= limit)
        EvictionTests.expectWithinBudget(store, limit: limit)
    }
}
