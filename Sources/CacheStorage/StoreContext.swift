import Synchronization

/// What every shard shares: the arena and pool, the sequence/flush state, and
/// the shard directory (for taking segments from each other).
final class StoreContext: @unchecked Sendable {
    let arena: Arena
    let pool: SegmentPool
    let shardCount: Int
    /// `hash >> shardShift` is the shard (the high bits).
    let shardShift: UInt64
    /// Filled by ItemStore right after the shards are made; read-only afterwards.
    let shards: UnsafeMutablePointer<UnsafeMutablePointer<ShardState>>
    /// CAS counter and flush boundary; see StoreSequence.
    let sequence: UnsafeMutablePointer<StoreSequence>
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
        // Safe because it is initialized on the next line and deinitialized and freed once, in deinit.
        self.sequence = .allocate(capacity: 1)
        sequence.initialize(to: StoreSequence())
    }

    deinit {
        sequence.pointee.destroy()
        sequence.deinitialize(count: 1)
        sequence.deallocate()
        shards.deallocate()
    }

    @inline(__always)
    func shardIndex(hash: UInt64) -> Int {
        // `>>` by 64 (one shard) yields 0, as wanted.
        Int(truncatingIfNeeded: hash >> shardShift)
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
}
