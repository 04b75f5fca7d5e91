#if canImport(Glibc)
import Glibc
#endif

/// A shard's hash table: a power-of-two array of 32-bit chain heads.
///
/// Chains run through the items' `next` fields, so the table costs 4 bytes per
/// bucket plus 4 per item (inside the header). The bucket is the hash's low bits
/// (the shard took the high ones). The table doubles when the shard holds more
/// than 1.5 items per bucket; growing rehashes every chain at once under the
/// shard's lock (a few milliseconds for 100k+ items in one shard, rare).
struct HashTable {
    private(set) var buckets: UnsafeMutablePointer<UInt32>
    private(set) var mask: Int
    /// Items linked.
    var count = 0

    init(bucketCount: Int) {
        precondition(bucketCount > 0 && bucketCount & (bucketCount - 1) == 0)
        buckets = HashTable.allocateBuckets(bucketCount)
        mask = bucketCount - 1
    }

    func deallocate() {
        free(buckets)
    }

    var bucketCount: Int { mask + 1 }
    var bytes: Int { bucketCount * MemoryLayout<UInt32>.stride }

    var needsGrowth: Bool { count > bucketCount + bucketCount / 2 }

    /// The chain head slot for `hash`, as raw memory like the items' `next` fields.
    @inline(__always)
    func slot(for hash: UInt64) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(buckets + (Int(truncatingIfNeeded: hash) & mask))
    }

    /// Doubles the table; `resolve` turns a handle into its record.
    mutating func grow(resolve: (UInt32) -> ItemRef) {
        let newCount = bucketCount * 2
        let newBuckets = HashTable.allocateBuckets(newCount)
        let newMask = newCount - 1
        for bucket in 0...mask {
            var handle = buckets[bucket]
            while handle != 0 {
                let item = resolve(handle)
                let next = item.next
                let index = Int(truncatingIfNeeded: KeyHash.hash(UnsafeRawBufferPointer(item.key))) & newMask
                item.next = newBuckets[index]
                newBuckets[index] = handle
                handle = next
            }
        }
        free(buckets)
        buckets = newBuckets
        mask = newMask
    }

    private static func allocateBuckets(_ count: Int) -> UnsafeMutablePointer<UInt32> {
        // calloc: zero heads mean empty chains, and large tables come back as untouched mmap'd pages.
        guard let memory = calloc(count, MemoryLayout<UInt32>.stride) else {
            fatalError("out of memory allocating \(count) hash buckets")
        }
        return memory.bindMemory(to: UInt32.self, capacity: count)
    }
}
