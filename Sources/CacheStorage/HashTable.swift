#if canImport(Glibc)
import Glibc
#endif

/// A shard's hash table: a power-of-two array of 32-bit chain heads.
///
/// Chains run through the items' `next` fields, so the table costs 4 bytes per
/// bucket plus 4 per item (inside the header). The bucket is the hash's low bits
/// (the shard took the high ones).
///
/// When the shard holds more than 1.5 items per bucket the table doubles, and
/// the old buckets move over a few at a time (`migrate`, called by every link)
/// instead of all at once: rehashing 100k+ items in one go would stall the
/// shard for tens of milliseconds of cache misses. While a move is under way a
/// hash whose old bucket has not moved yet still lives in the old table.
struct HashTable {
    private(set) var buckets: UnsafeMutablePointer<UInt32>
    private(set) var mask: Int
    /// The table being emptied into `buckets`, or nil.
    private var oldBuckets: UnsafeMutablePointer<UInt32>?
    private var oldMask = 0
    /// Old buckets below this index have moved.
    private var migrated = 0
    /// Old buckets moved per link while growing: the old table is empty long
    /// before the next doubling is due (that takes another 1.5 x buckets links).
    static let bucketsPerStep = 4

    init(bucketCount: Int) {
        precondition(bucketCount > 0 && bucketCount & (bucketCount - 1) == 0)
        buckets = HashTable.allocateBuckets(bucketCount)
        mask = bucketCount - 1
    }

    func deallocate() {
        free(buckets)
        if let oldBuckets { free(oldBuckets) }
    }

    var bucketCount: Int { mask + 1 }
    var isMigrating: Bool { oldBuckets != nil }
    var bytes: Int { bucketCount * MemoryLayout<UInt32>.stride + (oldBuckets == nil ? 0 : (oldMask + 1) * MemoryLayout<UInt32>.stride) }

    func needsGrowth(items: Int) -> Bool { oldBuckets == nil && items > bucketCount + bucketCount / 2 }

    /// The chain head slot for `hash`, as raw memory like the items' `next` fields.
    @inline(__always)
    func slot(for hash: UInt64) -> UnsafeMutableRawPointer {
        if let oldBuckets {
            let old = Int(truncatingIfNeeded: hash) & oldMask
            if old >= migrated { return UnsafeMutableRawPointer(oldBuckets + old) }
        }
        return UnsafeMutableRawPointer(buckets + (Int(truncatingIfNeeded: hash) & mask))
    }

    /// Starts doubling: a new empty table takes over, the old one moves later.
    mutating func startGrowth() {
        precondition(oldBuckets == nil)
        oldBuckets = buckets
        oldMask = mask
        migrated = 0
        let newCount = bucketCount * 2
        buckets = HashTable.allocateBuckets(newCount)
        mask = newCount - 1
    }

    /// Moves up to `limit` old buckets into the new table; `resolve` turns a
    /// handle into its record. Frees the old table once it is empty.
    mutating func migrate(limit: Int, resolve: (UInt32) -> ItemRef) {
        guard let old = oldBuckets else { return }
        let end = min(oldMask + 1, migrated + limit)
        while migrated < end {
            var handle = old[migrated]
            // Safe because migrated <= oldMask: inside the old table.
            old[migrated] = 0
            while handle != 0 {
                let item = resolve(handle)
                let next = item.next
                let index = Int(truncatingIfNeeded: KeyHash.hash(UnsafeRawBufferPointer(item.key))) & mask
                // Safe because index is masked to the new table and handle names a linked record.
                item.next = buckets[index]
                buckets[index] = handle
                handle = next
            }
            migrated += 1
        }
        if migrated > oldMask {
            free(old)
            oldBuckets = nil
            oldMask = 0
            migrated = 0
        }
    }

    /// Every chain head (old table's unmoved ones too), for walks over all items.
    func forEachChain(_ body: (_ head: UInt32, _ bucketOf: (UInt64) -> Bool) -> String?) -> String? {
        if let oldBuckets {
            for index in migrated...oldMask {
                if let problem = body(oldBuckets[index], { Int(truncatingIfNeeded: $0) & oldMask == index }) { return problem }
            }
        }
        for index in 0...mask {
            if let problem = body(buckets[index], { [migrated, oldMask, isMigrating] hash in
                guard Int(truncatingIfNeeded: hash) & mask == index else { return false }
                // During a move, a hash belongs here only if its old bucket has moved.
                return !isMigrating || Int(truncatingIfNeeded: hash) & oldMask < migrated
            }) { return problem }
        }
        return nil
    }

    /// Calls `body` with the head of every chain that may hold hashes of the
    /// class `position` names (the hashes whose low bits, under the smaller of
    /// the tables in use, equal `position`'s), then returns the position of the
    /// next class, or 0 once the walk has come round.
    ///
    /// Classes come in reverse-binary order of their bucket index (the cursor
    /// of Redis's SCAN): when the table doubles, bucket b splits into b and
    /// b + size, and in that order both halves fall where b was. So however
    /// often the table grows between two calls, the classes already visited
    /// are exactly those before `position`, and a hash present all along is
    /// in exactly one class visited once. The table never shrinks.
    func scan(_ position: UInt64, _ body: (_ head: UInt32) -> Void) -> UInt64 {
        let smallMask = oldBuckets == nil ? mask : oldMask
        let bucket = Int(truncatingIfNeeded: position) & smallMask
        // A moved old bucket was left empty, so both tables can be read.
        if let oldBuckets { body(oldBuckets[bucket]) }
        var index = bucket
        while index <= mask {
            // Safe because index <= mask: inside the table.
            body(buckets[index])
            index += smallMask + 1
        }
        return HashTable.reversed(HashTable.reversed(position | ~UInt64(smallMask)) &+ 1)
    }

    private static func reversed(_ value: UInt64) -> UInt64 {
        var v = value
        v = ((v >> 1) & 0x5555_5555_5555_5555) | ((v & 0x5555_5555_5555_5555) << 1)
        v = ((v >> 2) & 0x3333_3333_3333_3333) | ((v & 0x3333_3333_3333_3333) << 2)
        v = ((v >> 4) & 0x0F0F_0F0F_0F0F_0F0F) | ((v & 0x0F0F_0F0F_0F0F_0F0F) << 4)
        return v.byteSwapped
    }

    private static func allocateBuckets(_ count: Int) -> UnsafeMutablePointer<UInt32> {
        // calloc: zero heads mean empty chains, and large tables come back as untouched mmap'd pages.
        guard let memory = calloc(count, MemoryLayout<UInt32>.stride) else {
            fatalError("out of memory allocating \(count) hash buckets")
        }
        // Safe because calloc returned count zeroed UInt32-sized, suitably aligned slots.
        return memory.bindMemory(to: UInt32.self, capacity: count)
    }
}
