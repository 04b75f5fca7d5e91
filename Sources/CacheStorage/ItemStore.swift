// The node's item store. No I/O, no protocol: keys and values are bytes, time is passed in.
//
//                 key bytes
//                     |  ItemStore.hash (KeyHash: 64 bits, 8 bytes a step)
//                     v
//   high bits -> shard (one of N, own pthread mutex)   low bits -> bucket
//                     |
//   withShard(hash) { lookup / allocate / link / unlink }      <- node's worker threads
//                     |
//       +-------------+---------------------------------------------+
//       | ShardState                                                |
//       |  HashTable: UInt32 bucket heads -> chain via item.next    |
//       |  segments in two lists by record size (small / large),    |
//       |  each in write order: oldest ... head (append here)       |
//       |  LargeItemTable: items > segment/8 in their own mmap,     |
//       |                  each with a 32-byte stub in a segment    |
//       +-----+-----------------------------------+-----------------+
//             | full head: take a free segment    | budget exhausted:
//             v                                   v
//       SegmentPool (budget: resident segments    Eviction (CLOCK over segments):
//       + large mappings <= limit; free lists)    compact the segment due first in place
//             |                                   (large ones fall due sooner), keep
//             |                                   recently read items, unlink the rest
//             v
//       Arena: one mmap(MAP_NORESERVE) reservation cut into segments;
//       items addressed by 32-bit handles (offset / 8)
//
//   reclaimExpired (node's timer thread): expired/flushed items out, mostly dead
//   segments compacted back into the pool.
//
// Lock order: one shard lock, then the pool lock (innermost) or the flush lock.
// A shard never waits for a second shard lock (only tryLock), so no cycle exists.

import Concurrency
#if canImport(Glibc)
import Glibc
#endif

/// Whole seconds since the node started (memcached's "rel_time"); the node's clock
/// ticks it. As an expiry, 0 means "never".
public typealias ServerTime = UInt32

/// The item store: a hash table with eviction under a hard memory budget.
/// Thread-safe: every method may be called from any thread.
///
/// Geometry, fixed at init:
/// - shards: `configuration.shardCount` (default 8), halved while the budget
///   would give a shard fewer than four 64 KiB segments;
/// - segment size: budget / (shards * 8), rounded down to a power of two and
///   clamped to 64 KiB...1 MiB (1 MiB from a 64 MiB budget on), so each shard
///   holds about 8 segments or more;
/// - large items: records above segment size / 8 (128 KiB with 1 MiB segments),
///   so a segment's unusable tail stays under 1/8;
/// - arena reservation: max(budget, 4 GiB) of address space, at most 16 GiB.
public final class ItemStore: @unchecked Sendable {
    public let configuration: StorageConfiguration
    let context: StoreContext
    let largeThreshold: Int

    static let minimumSegmentSize = 64 << 10
    static let maximumSegmentSize = 1 << 20
    static let defaultReservation = 4 << 30

    /// Throws `AllocationFailure.outOfMemory` if the address space cannot be reserved.
    public init(configuration: StorageConfiguration) throws {
        self.configuration = configuration
        let limit = max(0, configuration.memoryLimit)
        var shardCount = 1
        while shardCount * 2 <= min(64, max(1, configuration.shardCount)) { shardCount *= 2 }
        while shardCount > 1 && limit / shardCount < 4 * ItemStore.minimumSegmentSize { shardCount /= 2 }
        let wanted = min(ItemStore.maximumSegmentSize, max(ItemStore.minimumSegmentSize, limit / (shardCount * 8)))
        let segmentSize = 1 << (Int.bitWidth - 1 - wanted.leadingZeroBitCount)
        guard let arena = Arena(segmentSize: segmentSize, wantedBytes: max(limit, ItemStore.defaultReservation),
                                minimumBytes: min(limit, Arena.maxBytes)) else {
            throw AllocationFailure.outOfMemory
        }
        let pool = SegmentPool(arena: arena, limit: limit)
        context = StoreContext(arena: arena, pool: pool, shardCount: shardCount)
        largeThreshold = segmentSize / 8
        let buckets = max(64, (1 << min(max(configuration.hashPower, 1), 32)) / shardCount)
        for index in 0..<shardCount {
            // Each shard on cache lines of its own, so counters written by one thread
            // never share a line with another shard's state.
            // Safe because each shard is initialized right away and deinitialized and freed once, in deinit.
            let bytes = (MemoryLayout<ShardState>.stride + CacheLine.padding - 1) & ~(CacheLine.padding - 1)
            let shard = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: CacheLine.padding)
                .bindMemory(to: ShardState.self, capacity: 1)
            shard.initialize(to: ShardState(index: index, context: context, configuration: configuration,
                                            largeThreshold: largeThreshold, bucketCount: buckets))
            (context.shards + index).initialize(to: shard)
        }
        context.updateFairShare(limit: limit)
    }

    deinit {
        for index in 0..<context.shardCount {
            let shard = context.shards[index]
            shard.pointee.destroy()
            shard.deinitialize(count: 1)
            UnsafeMutableRawPointer(shard).deallocate()
        }
    }

    /// The hash of a key; compute it once per key and pass it to `withShard`.
    public static func hash(_ key: UnsafeRawBufferPointer) -> UInt64 {
        KeyHash.hash(key)
    }

    /// Runs `body` with the part of the store that owns keys of this hash locked.
    /// Keep `body` short: it blocks other threads using the same part. Do not
    /// call `withShard` (or anything else on the store) from inside `body`.
    @inlinable
    public func withShard<R>(hash: UInt64, _ body: (inout LockedShard) throws -> R) rethrows -> R {
        var shard = _lockShard(hash: hash)
        defer { _unlockShard(shard) }
        return try body(&shard)
    }

    @usableFromInline
    func _lockShard(hash: UInt64) -> LockedShard {
        let shard = context.shards[context.shardIndex(hash: hash)]
        shard.pointee.lock.lock()
        return LockedShard(state: UnsafeMutableRawPointer(shard))
    }

    @usableFromInline
    func _unlockShard(_ locked: LockedShard) {
        // Safe because `state` always comes from ItemStore's typed shard pointers.
        let shard = locked.state.assumingMemoryBound(to: ShardState.self)
        if shard.pointee.pendingLarge != 0 {
            shard.pointee.drainPendingLarge()
        }
        shard.pointee.lock.unlock()
    }

    /// memcached's flush_all. With `boundary <= now`, every item stored before
    /// this call becomes invisible, exactly (items stored right after it in the
    /// same second stay). With a future boundary the flush waits: the first
    /// operation at or after `boundary` applies it, hiding every item stored
    /// before that moment. A new flush replaces a pending one. See StoreSequence.
    public func flush(boundary: ServerTime, now: ServerTime) {
        context.noteNow(now)
        context.sequence.pointee.flush(boundary: boundary, now: now)
    }

    /// Changes the memory budget (`cache_memlimit`); shrinking evicts down to it
    /// (even with evictions off) before returning. Segments never grow past the
    /// arena reservation: budget beyond it serves large items only.
    public func setMemoryLimit(_ bytes: Int) {
        let pool = context.pool
        pool.setLimit(bytes)
        context.updateFairShare(limit: max(0, bytes))
        let now = context.latestNow.load(ordering: .relaxed)
        while pool.isOverLimit {
            if pool.discardOneFreeResident() { continue }
            var fullest = -1
            var fullestCount = 0
            for index in 0..<context.shardCount {
                let shard = context.shards[index]
                shard.pointee.lock.lock()
                let count = shard.pointee.segmentCount
                shard.pointee.lock.unlock()
                if count > fullestCount {
                    fullest = index
                    fullestCount = count
                }
            }
            guard fullest >= 0 else { break }
            let shard = context.shards[fullest]
            shard.pointee.lock.lock()
            let victim = shard.pointee.segmentToGiveUp()
            if victim != 0 && shard.pointee.evacuate(victim, mayEvict: true, now: now) {
                pool.give(victim, discard: true)
            }
            shard.pointee.drainPendingLarge()
            shard.pointee.lock.unlock()
        }
    }

    /// Background reclaim: unlinks up to `limit` expired (or flushed) items and
    /// gives mostly-dead segments back to the pool. Returns how many were
    /// reclaimed. Visits each shard at most once per call, a few segments per
    /// lock hold, going on where the previous call stopped.
    public func reclaimExpired(now: ServerTime, limit: Int) -> Int {
        context.sequence.pointee.applyPendingFlush(now: now)
        context.noteNow(now)
        var total = 0
        for index in 0..<context.shardCount {
            let shard = context.shards[index]
            while total < limit {
                shard.pointee.lock.lock()
                let (reclaimed, finished) = shard.pointee.reclaimStep(now: now, limit: limit - total, maxSegments: 4)
                shard.pointee.drainPendingLarge()
                shard.pointee.lock.unlock()
                total += reclaimed
                if finished { break }
            }
            if total >= limit { break }
        }
        return total
    }

    public func statistics() -> StorageStatistics {
        var statistics = StorageStatistics()
        for index in 0..<context.shardCount {
            let shard = context.shards[index]
            shard.pointee.lock.lock()
            let counters = shard.pointee.counters
            statistics.currentItems += counters.currentItems
            statistics.totalItems += counters.totalItems
            statistics.bytes += counters.bytes
            statistics.evictions += counters.evictions
            statistics.reclaimed += counters.reclaimed
            statistics.expiredUnfetched += counters.expiredUnfetched
            statistics.evictedUnfetched += counters.evictedUnfetched
            statistics.itemsRetained += counters.itemsRetained
            statistics.compactions += counters.compactions
            statistics.segmentsInUse += shard.pointee.segmentCount
            statistics.largeItems += shard.pointee.large.count
            statistics.largeItemBytes += shard.pointee.large.mappedBytes
            statistics.hashBuckets += shard.pointee.table.bucketCount
            statistics.hashTableBytes += shard.pointee.table.bytes
            statistics.hashExpanding = statistics.hashExpanding || shard.pointee.table.isMigrating
            statistics.crawlerReclaimed += counters.crawlerReclaimed
            statistics.crawlerItemsChecked += counters.crawlerItemsChecked
            statistics.deadBytes += shard.pointee.deadBytes
            shard.pointee.lock.unlock()
        }
        let pool = context.pool.snapshot()
        statistics.memoryLimit = pool.limit
        statistics.residentBytes = pool.charge
        statistics.residentBytesPeak = pool.peakCharge
        statistics.segmentsFreeResident = pool.freeResidentSegments
        statistics.segmentSize = context.arena.segmentSize
        statistics.largeItemThreshold = largeThreshold
        statistics.shards = context.shardCount
        statistics.arenaReservedBytes = context.arena.reservedBytes
        return statistics
    }

    /// Zeroes counters (not gauges such as current items and bytes), for `stats reset`.
    public func resetStatistics() {
        for index in 0..<context.shardCount {
            let shard = context.shards[index]
            shard.pointee.lock.lock()
            shard.pointee.counters.reset()
            shard.pointee.lock.unlock()
        }
        context.pool.resetPeak()
    }

    /// Diagnostic: bytes of the arena actually resident, by mincore(2). Slow
    /// (one byte per page of the segments ever used); not for hot paths.
    public func arenaResidentBytes() -> Int {
        context.arena.residentBytes(segments: context.pool.snapshot().touchedSegments)
    }

    /// Diagnostic: checks every chain, segment and counter; returns a description
    /// of the first inconsistency, or nil. Slow: for tests and debugging.
    public func validate() -> String? {
        for index in 0..<context.shardCount {
            let shard = context.shards[index]
            shard.pointee.lock.lock()
            let problem = shard.pointee.validate()
            shard.pointee.lock.unlock()
            if let problem { return problem }
        }
        let pool = context.pool.snapshot()
        if pool.charge > pool.limit {
            return "pool charge \(pool.charge) above limit \(pool.limit)"
        }
        return nil
    }
}
