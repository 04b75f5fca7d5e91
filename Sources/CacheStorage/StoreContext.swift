import Synchronization

/// What every shard shares: the arena and pool, the CAS/sequence counter, the
/// flush boundary, and the shard directory (for taking segments from each other).
///
/// ## Sequence numbers, CAS and flush
///
/// Every `link` and `assignNewCas` draws a fresh number from one 64-bit counter
/// and stores it in the item's cas field, whether CAS is enabled or not (with
/// `-C` the item is marked so that `ItemRef.cas` reads 0). A flush draws a
/// number too, the *flush sequence*: an item whose number is below it was
/// stored before the flush and is invisible. That makes a flush exact even
/// within one second: `set; flush_all; get` misses, `flush_all; set; get` hits.
///
/// A delayed flush (boundary in the future) is kept pending and applied, the
/// same way, by the first store operation that runs at or after the boundary:
/// items stored before that moment vanish, items stored after it survive.
/// memcached 1.6.18 differs slightly: with CAS on it sets `oldest_live =
/// boundary - 1`, so its delayed flush bites a second early; with `-C` its
/// immediate flush also hides items stored later in the same second.
///
/// Items whose CAS a client set explicitly (meta `E`) carry no sequence; for
/// them the flush falls back to time: flushed if last stored or accessed at or
/// before the second of the latest flush (memcached instead compares the
/// client's token with its flush CAS, which can hide such items forever).
final class StoreContext: @unchecked Sendable {
    let arena: Arena
    let pool: SegmentPool
    let shardCount: Int
    /// `hash >> shardShift` is the shard (the high bits).
    let shardShift: UInt64
    /// Filled by CacheStorage right after the shards are made; read-only afterwards.
    let shards: UnsafeMutablePointer<UnsafeMutablePointer<ShardState>>

    private let sequence = Atomic<UInt64>(0)
    private let flushSequence = Atomic<UInt64>(0)
    private let flushTime = Atomic<UInt32>(0)
    private let pendingFlushAt = Atomic<UInt32>(0)
    private let flushLock = PThreadMutex()
    /// Segments a shard may hold before it must evict its own rather than take
    /// another shard's: half its share of the budget, at least 2.
    let fairShare = Atomic<Int>(2)
    /// The latest `now` seen on slow paths, for evictions asked for without a time (setMemoryLimit).
    let latestNow = Atomic<UInt32>(0)

    init(arena: Arena, pool: SegmentPool, shardCount: Int) {
        self.arena = arena
        self.pool = pool
        self.shardCount = shardCount
        self.shardShift = UInt64(64 - shardCount.trailingZeroBitCount)
        self.shards = .allocate(capacity: shardCount)
    }

    deinit {
        flushLock.destroy()
        shards.deallocate()
    }

    @inline(__always)
    func shardIndex(hash: UInt64) -> Int {
        // `>>` by 64 (one shard) yields 0, as wanted.
        Int(truncatingIfNeeded: hash >> shardShift)
    }

    @inline(__always)
    func nextSequence() -> UInt64 {
        sequence.wrappingAdd(1, ordering: .relaxed).newValue
    }

    func updateFairShare(limit: Int) {
        let segments = limit / arena.segmentSize
        fairShare.store(max(2, segments / shardCount / 2), ordering: .relaxed)
    }

    func noteNow(_ now: ServerTime) {
        if latestNow.load(ordering: .relaxed) < now {
            latestNow.store(now, ordering: .relaxed)
        }
    }

    // MARK: Flush

    func flush(boundary: ServerTime, now: ServerTime) {
        flushLock.lock()
        defer { flushLock.unlock() }
        if boundary <= now {
            pendingFlushAt.store(0, ordering: .relaxed)
            flushNowLocked(now: now)
        } else {
            // A later flush_all replaces a pending one, as in memcached.
            pendingFlushAt.store(boundary, ordering: .relaxed)
        }
    }

    /// Turns a pending delayed flush into a real one once its time has come.
    /// Called at the start of every operation that has a `now`.
    @inline(__always)
    func applyPendingFlush(now: ServerTime) {
        let at = pendingFlushAt.load(ordering: .relaxed)
        if at != 0 && now >= at {
            capturePendingFlush(now: now)
        }
    }

    private func capturePendingFlush(now: ServerTime) {
        flushLock.lock()
        defer { flushLock.unlock() }
        let at = pendingFlushAt.load(ordering: .relaxed)
        if at != 0 && now >= at {
            pendingFlushAt.store(0, ordering: .relaxed)
            flushNowLocked(now: now)
        }
    }

    private func flushNowLocked(now: ServerTime) {
        let boundary = nextSequence()
        flushTime.store(now, ordering: .relaxed)
        flushSequence.store(boundary, ordering: .releasing)
    }

    /// Was this linked item stored before the latest flush?
    @inline(__always)
    func isFlushed(_ item: ItemRef) -> Bool {
        let boundary = flushSequence.load(ordering: .acquiring)
        if boundary == 0 { return false }
        if item.bits.contains(.explicitCas) {
            return item.lastAccess <= flushTime.load(ordering: .relaxed)
        }
        return item.rawCas < boundary
    }
}
