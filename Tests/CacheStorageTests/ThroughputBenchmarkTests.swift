import CacheStorage
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// Nanoseconds per operation, single thread, printed (no thresholds: machines differ).
/// Run with `MEMCLUSTER_BENCH=1 swift test -c release --filter ThroughputBenchmark`.
@Suite("Throughput benchmark", .serialized, .enabled(if: getenv("MEMCLUSTER_BENCH") != nil))
struct ThroughputBenchmarkTests {
    static func monotonicNanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    /// 20-byte keys "key:0000000000000123" in one block, so the loop allocates nothing.
    final class Keys {
        let base: UnsafeMutableRawPointer
        let count: Int
        init(count: Int) {
            self.count = count
            base = .allocate(byteCount: count * 20, alignment: 8)
            for index in 0..<count {
                var number = index
                let key = base + index * 20
                for (offset, byte) in "key:".utf8.enumerated() { key.storeBytes(of: byte, toByteOffset: offset, as: UInt8.self) }
                for position in stride(from: 19, through: 4, by: -1) {
                    key.storeBytes(of: UInt8(48 + number % 10), toByteOffset: position, as: UInt8.self)
                    number /= 10
                }
            }
        }
        deinit { base.deallocate() }
        subscript(index: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base + (index % count) * 20, count: 20) }
    }

    static func measure(_ label: String, operations: Int, _ body: (Int) -> Void) {
        let start = monotonicNanoseconds()
        for index in 0..<operations { body(index) }
        let elapsed = monotonicNanoseconds() - start
        print("\(label): \(Double(elapsed) / Double(operations)) ns/op")
    }

    static func set(_ store: ItemStore, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) {
        let hash = ItemStore.hash(key)
        store.withShard(hash: hash) { shard in
            if case .success(let item) = shard.allocate(key: key, valueLength: value.count, clientFlags: 0, expiry: 0, now: 1) {
                item.value.copyMemory(from: value)
                shard.link(item, hash: hash, now: 1)
            }
        }
    }

    static func get(_ store: ItemStore, _ key: UnsafeRawBufferPointer) -> Int {
        let hash = ItemStore.hash(key)
        return store.withShard(hash: hash) { shard in
            if case .hit(let item) = shard.lookup(key: key, hash: hash, now: 1) { return item.value.count }
            return 0
        }
    }

    /// Operations per measurement; MEMCLUSTER_BENCH_OPS shrinks it (e.g. to count allocations under valgrind).
    static let operations = getenv("MEMCLUSTER_BENCH_OPS").flatMap { Int(String(cString: $0)) } ?? 1_000_000

    @Test func singleThread() throws {
        let value = UnsafeMutableRawBufferPointer.allocate(byteCount: 100, alignment: 8)
        defer { value.deallocate() }
        value.initializeMemory(as: UInt8.self, repeating: 0x61)
        let values = UnsafeRawBufferPointer(value)

        let hotKeys = Keys(count: 10_000)
        let hot = try ItemStore(configuration: StorageConfiguration(memoryLimit: 64 << 20))
        Self.measure("set, 10k keys (cache-resident)", operations: Self.operations) { Self.set(hot, hotKeys[$0], values) }
        var found = 0
        Self.measure("get, 10k keys (cache-resident)", operations: Self.operations) { found += Self.get(hot, hotKeys[$0]) }

        let keys = Keys(count: 1_000_000)
        let big = try ItemStore(configuration: StorageConfiguration(memoryLimit: 1 << 30))
        Self.measure("set, 1M new keys", operations: Self.operations) { Self.set(big, keys[$0], values) }
        Self.measure("get, 1M keys", operations: Self.operations) { found += Self.get(big, keys[$0]) }

        let small = try ItemStore(configuration: StorageConfiguration(memoryLimit: 64 << 20))
        Self.measure("set, 1M keys into 64 MiB (evicting)", operations: Self.operations) { Self.set(small, keys[$0], values) }
        #expect(found == 2 * Self.operations * 100)
        if Self.operations == 1_000_000 { #expect(small.statistics().evictions > 500_000) }
    }

    /// 90% get / 10% set over 100k keys from 1, 2 and 4 threads: total throughput.
    @Test func severalThreads() throws {
        let keys = Keys(count: 100_000)
        let store = try ItemStore(configuration: StorageConfiguration(memoryLimit: 256 << 20))
        let value = UnsafeMutableRawBufferPointer.allocate(byteCount: 100, alignment: 8)
        defer { value.deallocate() }
        value.initializeMemory(as: UInt8.self, repeating: 0x62)
        let values = UnsafeRawBufferPointer(value)
        for index in 0..<100_000 { Self.set(store, keys[index], values) }
        struct Shared: @unchecked Sendable {
            let store: ItemStore
            let keys: Keys
            let values: UnsafeRawBufferPointer
        }
        let shared = Shared(store: store, keys: keys, values: values)
        for threads in [1, 2, 4] {
            let perThread = Self.operations / threads
            let start = Self.monotonicNanoseconds()
            runThreads(threads) { thread in
                var state = UInt64(thread + 1) &* 0x9E37_79B9_7F4A_7C15
                for _ in 0..<perThread {
                    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                    let key = shared.keys[Int(state >> 33) % 100_000]
                    if state & 0xF < 2 {
                        Self.set(shared.store, key, shared.values)
                    } else {
                        _ = Self.get(shared.store, key)
                    }
                }
            }
            let elapsed = Double(Self.monotonicNanoseconds() - start) / 1e9
            print("\(threads) thread(s), 90% get / 10% set, 100k keys: \(Int(Double(perThread * threads) / elapsed / 1000))k ops/s")
        }
        #expect(store.statistics().currentItems == 100_000)
    }
}
