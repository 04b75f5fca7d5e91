// ItemStore on the node's paths, without I/O: a get hit (hash, withShard, lookup,
// read the value) and a set (hash, withShard, allocate, copy the value, link), with
// 20-byte keys and 100-byte values, keys visited in a fixed shuffled order. Time is
// per operation (scalingFactor .kilo).
//
// Every store is filled in the benchmark's setup hook (outside the measurement), so
// the hash tables have already grown to their final size: lookups and sets then
// must not allocate (Thresholds/StorageBenchmarks.*.p90.json hold mallocCountTotal = 0).
// The teardown hook checks that each benchmark measured what its name says: no
// compaction or eviction in "room", compactions but no eviction in
// "replace-compacting", evictions in "full".

import Benchmark
import BenchmarkSupport
import CacheStorage

let now: ServerTime = 1
let valueBytes = ByteStream(makeValue(length: 100), units: 1)

/// A set of `key` with the 100-byte value; false when the store refused it.
@inline(__always)
func store(_ storage: ItemStore, _ key: UnsafeRawBufferPointer) -> Bool {
    let hash = ItemStore.hash(key)
    return storage.withShard(hash: hash) { shard in
        switch shard.allocate(key: key, valueLength: 100, clientFlags: 0, expiry: 0, now: now) {
        case .success(let item):
            item.value.copyMemory(from: valueBytes.bytes)
            shard.link(item, hash: hash, now: now)
            return true
        case .failure:
            return false
        }
    }
}

/// A get: the value's first byte on a hit, -1 on a miss.
@inline(__always)
func fetch(_ storage: ItemStore, _ key: UnsafeRawBufferPointer) -> Int {
    let hash = ItemStore.hash(key)
    return storage.withShard(hash: hash) { shard in
        if case .hit(let item) = shard.lookup(key: key, hash: hash, now: now) {
            return Int(item.value[0])
        }
        return -1
    }
}

/// One benchmark's store, made in its setup hook and dropped in its teardown.
final class Fixture: @unchecked Sendable {
    let keyCount: Int
    let configuration: StorageConfiguration
    let check: @Sendable (StorageStatistics) -> String?
    var storage: ItemStore?
    var keys: KeySet?
    var order: AccessOrder?
    /// Where in `order` the next sample goes on: samples continue the walk rather
    /// than repeat its first 1000 keys (which would stay in the CPU caches).
    var position = 0

    /// Sets done in setup after the fill, going on along `order` (to reach a steady state).
    let extraSets: Int

    init(keyCount: Int, memoryLimit: Int, extraSets: Int = 0, check: @escaping @Sendable (StorageStatistics) -> String?) {
        self.keyCount = keyCount
        self.extraSets = extraSets
        self.configuration = StorageConfiguration(memoryLimit: memoryLimit)
        self.check = check
    }

    /// Makes the store and sets every key once (in shuffled order).
    func setUp() throws {
        let storage = try ItemStore(configuration: configuration)
        let keys = KeySet(count: keyCount, length: 20)
        let order = AccessOrder(count: keyCount)
        for position in 0..<keyCount where !store(storage, keys.key(order[position])) {
            benchmarkInputFailure("the store refused key \(order[position]) while filling")
        }
        for set in 0..<extraSets where !store(storage, keys.key(order[set % keyCount])) {
            benchmarkInputFailure("the store refused a set while warming up")
        }
        self.storage = storage
        self.keys = keys
        self.order = order
        position = extraSets % keyCount
    }

    func tearDown() {
        if let storage, let problem = check(storage.statistics()) { benchmarkInputFailure(problem) }
        storage = nil
        keys = nil
        order = nil
    }

    func configuration(maxIterations: Int = 10_000) -> Benchmark.Configuration {
        .init(
            metrics: [.wallClock, .throughput, .mallocCountTotal],
            warmupIterations: 10,
            scalingFactor: .kilo,
            maxDuration: .seconds(1),
            maxIterations: maxIterations,
            thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])],
            setup: { try self.setUp() },
            teardown: { self.tearDown() }
        )
    }
}

/// Gets of keys that are all present.
func getHitBenchmark(_ name: String, keyCount: Int, memoryLimit: Int) {
    let fixture = Fixture(keyCount: keyCount, memoryLimit: memoryLimit) { statistics in
        statistics.evictions == 0 && statistics.currentItems == keyCount
            ? nil : "\(statistics.evictions) evictions, \(statistics.currentItems) items: not all keys were present"
    }
    Benchmark(name, configuration: fixture.configuration()) { benchmark in
        guard let storage = fixture.storage, let keys = fixture.keys, let order = fixture.order else { return }
        var position = fixture.position
        var sum = 0
        for _ in benchmark.scaledIterations {
            let byte = fetch(storage, keys.key(order[position]))
            if byte < 0 { benchmarkInputFailure("miss on key \(order[position])") }
            sum &+= byte
            position = position &+ 1 == keyCount ? 0 : position &+ 1
        }
        fixture.position = position
        blackHole(sum)
    }
}

let benchmarks: @Sendable () -> Void = {
    getHitBenchmark("get-hit-10k", keyCount: 10_000, memoryLimit: 64 << 20)
    getHitBenchmark("get-hit-1M", keyCount: 1_000_000, memoryLimit: 512 << 20)

    // Sets that replace the 10k keys' items, with budget for every record the run
    // writes (at most (10 + 2000) x 1000 sets of 152 bytes, ~300 MB, under the 1 GiB
    // budget): no compaction, no eviction, and no table growth (the item count stays 10k).
    let room = Fixture(keyCount: 10_000, memoryLimit: 1 << 30) { statistics in
        statistics.evictions == 0 && statistics.compactions == 0 && statistics.currentItems == 10_000
            ? nil : "set-room: \(statistics.evictions) evictions, \(statistics.compactions) compactions, \(statistics.currentItems) items"
    }
    Benchmark("set-room-10k", configuration: room.configuration(maxIterations: 2000)) { benchmark in
        guard let storage = room.storage, let keys = room.keys, let order = room.order else { return }
        var position = room.position
        for _ in benchmark.scaledIterations {
            if !store(storage, keys.key(order[position])) { benchmarkInputFailure("set refused") }
            position = position &+ 1 == room.keyCount ? 0 : position &+ 1
        }
        room.position = position
    }

    // The steady state of the same workload: a 64 MiB budget is used up after ~440k
    // sets (done in setup), and from then on each full head is made from a segment that overwrites
    // left (almost) all dead, compacted in place: still no eviction and no growth.
    let steady = Fixture(keyCount: 10_000, memoryLimit: 64 << 20, extraSets: 600_000) { statistics in
        statistics.evictions == 0 && statistics.compactions > 0 && statistics.currentItems == 10_000
            ? nil : "set-replace-compacting: \(statistics.evictions) evictions, \(statistics.compactions) compactions, \(statistics.currentItems) items"
    }
    Benchmark("set-replace-compacting-10k", configuration: steady.configuration()) { benchmark in
        guard let storage = steady.storage, let keys = steady.keys, let order = steady.order else { return }
        var position = steady.position
        for _ in benchmark.scaledIterations {
            if !store(storage, keys.key(order[position])) { benchmarkInputFailure("set refused") }
            position = position &+ 1 == steady.keyCount ? 0 : position &+ 1
        }
        steady.position = position
    }

    // Sets of 1M distinct keys into a 64 MiB store that holds ~400k of them: once the
    // setup's fill has used the budget, every set makes room by CLOCK compaction and
    // eviction of the oldest segment.
    let full = Fixture(keyCount: 1_000_000, memoryLimit: 64 << 20) { statistics in
        statistics.evictions > 0 ? nil : "set-full: no evictions"
    }
    Benchmark("set-full-evicting", configuration: full.configuration()) { benchmark in
        guard let storage = full.storage, let keys = full.keys, let order = full.order else { return }
        var position = full.position
        for _ in benchmark.scaledIterations {
            if !store(storage, keys.key(order[position])) { benchmarkInputFailure("set refused") }
            position = position &+ 1 == full.keyCount ? 0 : position &+ 1
        }
        full.position = position
    }
}
