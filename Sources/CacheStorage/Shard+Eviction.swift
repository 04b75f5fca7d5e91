#if canImport(Glibc)
import Glibc
#endif

/// Making room: CLOCK over segments, counting reads and weighing size
/// (docs/eviction.md has the measurements behind the choices).
///
/// A shard appends records to its head segment. When the head is full it takes
/// a segment from the pool while the budget lasts. After that it makes room in
/// its own segments:
///
/// - a segment at least half dead (deletes, overwrites, lazily expired items)
///   is compacted in place, keeping every live item: no eviction needed;
/// - otherwise the oldest segment is compacted in place the CLOCK way: live
///   items read since they were written or last kept (`readCount`, 0...3)
///   slide down and stay, one read taken off; the rest are unlinked (evicted,
///   or reclaimed when expired or flushed). An item more than twice the
///   shard's mean size must have been read twice to stay: it holds the memory
///   of several smaller items, and a miss costs the same whatever the size.
///   The segment then becomes the head. A pass may free little when nearly
///   everything was read; the next one goes on with the next oldest segment.
///   After `passesKeepingAll` such passes for one store, passes keep at most
///   half a segment: room is always found, and a store never walks more than
///   a few segments however big the cache.
///
/// Large items need budget rather than head room: they release whole segments
/// ("evacuate": hot items are copied into the head, the rest unlinked, the
/// segment goes back to the pool with its pages discarded). A shard short of
/// segments takes one from a shard holding more, through `tryLock` only.
extension ShardState {
    enum Fate {
        case keep
        case evict
        case reclaim
    }

    /// Passes of one store that may keep every read item (see above).
    static let passesKeepingAll = 8

    /// What happens to a linked item met by a segment pass.
    @inline(__always)
    func fate(of item: ItemRef, now: ServerTime, evictCold: Bool, fits: Bool) -> Fate {
        if item.isExpired(now: now) || sequence.pointee.isFlushed(item) { return .reclaim }
        if !evictCold { return fits ? .keep : .evict }
        return fits && item.readCount >= readsToStay(item) ? .keep : .evict
    }

    /// Reads an item needs since its last pass to be kept by the next: two for
    /// one more than twice the shard's mean item size, else one.
    @inline(__always)
    func readsToStay(_ item: ItemRef) -> UInt8 {
        item.totalSize > 2 * counters.bytes / max(1, counters.currentItems) ? 2 : 1
    }

    /// Reserves `size` bytes at the head's write end, making room if needed.
    /// Nil when no room can be made (evictions off, or nothing can move).
    mutating func reserve(_ size: Int, now: ServerTime) -> UnsafeMutableRawPointer? {
        var attempts = 0
        while true {
            if head != 0 {
                let offset = Int(segments[Int(head)].writeOffset)
                if segmentSize - offset >= size {
                    segments[Int(head)].writeOffset = UInt32(offset + size)
                    return segmentBase(head) + offset
                }
            }
            let fresh = context.pool.take()
            if fresh != 0 {
                appendSegment(fresh)
                continue
            }
            attempts += 1
            if attempts > segmentCount + ShardState.passesKeepingAll + 64 || !makeHeadRoom(size, now: now, attempt: attempts) {
                return nil
            }
        }
    }

    /// Frees room in this shard's segments so that the head can take `size` bytes.
    private mutating func makeHeadRoom(_ size: Int, now: ServerTime, attempt: Int) -> Bool {
        context.noteNow(now)
        if attempt == 1, let candidate = compactionCandidate(needing: size) {
            compactInPlace(candidate, evictCold: false, now: now)
            return true
        }
        guard evictionsEnabled else { return false }
        if segmentCount < context.fairShare.load(ordering: .relaxed) && takeSegmentFromOtherShard(now: now) {
            return true
        }
        if segmentCount == 0 {
            // Nothing of our own to evict: another shard must give up a segment, or budget
            // (large items) so that the pool can hand one out. Its lock may be busy for a
            // moment (a short critical section), so try a few rounds.
            for _ in 0..<8 {
                if takeSegmentFromOtherShard(now: now) || freeBudgetInOtherShard(now: now) { return true }
            }
            return false
        }
        let keepAll = attempt <= min(segmentCount, ShardState.passesKeepingAll)
        compactInPlace(oldest, evictCold: true, retainLimit: keepAll ? Int.max : segmentSize / 2, now: now)
        return true
    }

    /// A segment whose compaction keeps every live item and still frees enough:
    /// with evictions on, one at least half dead; with evictions off, the one
    /// with the least live data, if that frees `size`.
    private func compactionCandidate(needing size: Int) -> UInt32? {
        var best: UInt32 = 0
        var bestFree = 0
        var segment = oldest
        while segment != 0 {
            let free = segmentSize - Int(segments[Int(segment)].liveBytes)
            if evictionsEnabled && segments[Int(segment)].deadBytes >= segmentSize / 2 {
                return segment
            }
            if free > bestFree {
                best = segment
                bestFree = free
            }
            segment = segments[Int(segment)].next
        }
        if !evictionsEnabled && best != 0 && bestFree >= size && (best != head || headFreeBytes < bestFree) {
            return best
        }
        return nil
    }

    /// Compacts a segment in place and makes it the head. With `evictCold`, the
    /// CLOCK pass described above, keeping at most `retainLimit` bytes; without,
    /// every live item stays. An item pinned by `preserving` stays where it is
    /// (the gap before it becomes a filler).
    mutating func compactInPlace(_ segment: UInt32, evictCold: Bool, retainLimit: Int = Int.max, now: ServerTime) {
        let base = segmentBase(segment)
        let end = Int(segments[Int(segment)].writeOffset)
        let pinOffset = pinHandle != 0 && self.segment(ofHandle: pinHandle) == segment
            ? (Int(pinHandle) << 3) - (Int(segment) << segmentShift) : -1
        var read = 0
        var write = 0
        var retained = 0
        while read < end {
            let record = ItemRef(header: base + read)
            let size = record.recordSize
            if read == pinOffset {
                if write < read {
                    ItemRef(header: base + write).initializeFiller(size: read - write)
                }
                write = read + size
                read += size
                continue
            }
            if passOver(record, now: now, evictCold: evictCold, fits: retained + size <= retainLimit) {
                if write != read {
                    relocate(from: base + read, to: base + write, size: size)
                }
                if evictCold {
                    retained += size
                    counters.itemsRetained += 1
                }
                write += size
            }
            read += size
        }
        segments[Int(segment)].writeOffset = UInt32(write)
        makeHead(segment)
        counters.compactions += 1
    }

    /// Empties a segment and takes it out of the list (the caller passes it on):
    /// live items are copied into the head while they fit (with `mayEvict`,
    /// only recently read ones, up to half a segment) and the rest unlinked.
    /// Without `mayEvict` it refuses unless every live item fits in the head.
    /// Never touches the segment holding the pinned record.
    mutating func evacuate(_ segment: UInt32, mayEvict: Bool, now: ServerTime) -> Bool {
        if pinHandle != 0 && self.segment(ofHandle: pinHandle) == segment { return false }
        let target = head != segment ? head : 0
        let live = Int(segments[Int(segment)].liveBytes)
        if !mayEvict && live > 0 && (target == 0 || live > headFreeBytes) { return false }
        let retainLimit = mayEvict ? segmentSize / 2 : Int.max
        let base = segmentBase(segment)
        let end = Int(segments[Int(segment)].writeOffset)
        var read = 0
        var retained = 0
        while read < end {
            let record = ItemRef(header: base + read)
            let size = record.recordSize
            let fits = target != 0 && retained + size <= retainLimit && headFreeBytes >= size
            if passOver(record, now: now, evictCold: mayEvict, fits: fits) {
                let offset = Int(segments[Int(target)].writeOffset)
                relocate(from: base + read, to: segmentBase(target) + offset, size: size)
                segments[Int(target)].writeOffset = UInt32(offset + size)
                segments[Int(target)].liveBytes += UInt32(size)
                segments[Int(segment)].liveBytes -= UInt32(size)
                record.bits.remove(.linked)
                retained += size
                counters.itemsRetained += 1
            }
            read += size
        }
        removeSegment(segment)
        return true
    }

    /// Decides a record's fate in a pass and unlinks it if it goes. Returns
    /// true when the record stays (and must be kept or moved by the caller).
    private mutating func passOver(_ record: ItemRef, now: ServerTime, evictCold: Bool, fits: Bool) -> Bool {
        switch record.kind {
        case .filler:
            return false
        case .item:
            guard record.bits.contains(.linked) else { return false }
            switch fate(of: record, now: now, evictCold: evictCold, fits: fits) {
            case .keep:
                if evictCold { record.readCount -= 1 }
                return true
            case .evict:
                dispose(record, handle: handle(ofRecordAt: record.header), reclaimed: false)
            case .reclaim:
                dispose(record, handle: handle(ofRecordAt: record.header), reclaimed: true)
            }
            return false
        case .largeStub:
            guard record.bits.contains(.linked) else { return false }
            let slot = Int(record.clientFlags)
            let item = LargeItem.item(inBlock: large.block(slot))
            let itemHandle = Arena.largeHandleBit | UInt32(slot)
            if slot == pinLargeSlot { return true }
            switch fate(of: item, now: now, evictCold: evictCold, fits: fits) {
            case .keep:
                if evictCold { item.readCount -= 1 }
                return true
            case .evict:
                dispose(item, handle: itemHandle, reclaimed: false)
            case .reclaim:
                dispose(item, handle: itemHandle, reclaimed: true)
            }
            return false
        }
    }

    /// Moves a live record (item or stub) and repoints whatever refers to it:
    /// the hash-chain slot of an item, the prefix of a stub's large item.
    /// The ranges may overlap (in-place compaction moves records down).
    private mutating func relocate(from source: UnsafeMutableRawPointer, to destination: UnsafeMutableRawPointer, size: Int) {
        let record = ItemRef(header: source)
        let newHandle = handle(ofRecordAt: destination)
        if record.kind == .largeStub {
            let item = LargeItem.item(inBlock: large.block(Int(record.clientFlags)))
            // Safe because both ranges lie in segments this shard owns; memmove allows overlap.
            memmove(destination, source, size)
            LargeItem.setStubHandle(of: item, newHandle)
            return
        }
        let oldHandle = handle(ofRecordAt: source)
        // Found before the move: the slot lies in a bucket, or in a live record outside the bytes being written.
        guard let slot = chainSlot(of: oldHandle, hash: KeyHash.hash(UnsafeRawBufferPointer(record.key))) else {
            preconditionFailure("linked item missing from its hash chain")
        }
        // Safe because both ranges lie in segments this shard owns; memmove allows overlap.
        memmove(destination, source, size)
        // Safe because the slot lies outside the bytes just moved (see above).
        slot.storeBytes(of: newHandle, as: UInt32.self)
    }

    /// Unlinks a linked item met by a pass, counting it as reclaimed (expired or
    /// flushed) or evicted; a large item's mapping is freed at once.
    mutating func dispose(_ item: ItemRef, handle itemHandle: UInt32, reclaimed: Bool) {
        guard let slot = chainSlot(of: itemHandle, hash: KeyHash.hash(UnsafeRawBufferPointer(item.key))) else {
            preconditionFailure("linked item missing from its hash chain")
        }
        let unfetched = !item.bits.contains(.fetched)
        unlink(item, handle: itemHandle, slot: slot, freeLargeNow: true)
        if reclaimed {
            counters.reclaimed += 1
            if unfetched { counters.expiredUnfetched += 1 }
        } else {
            counters.evictions += 1
            if unfetched { counters.evictedUnfetched += 1 }
        }
    }

    /// The oldest segment a pass may empty: not the head unless it is the only
    /// one, and not the one holding the pinned record.
    func oldestEvacuable(allowHead: Bool = true) -> UInt32 {
        var segment = oldest
        while segment != 0 {
            let isPinned = pinHandle != 0 && self.segment(ofHandle: pinHandle) == segment
            if !isPinned && (segment != head || (allowHead && segmentCount == 1)) { return segment }
            segment = segments[Int(segment)].next
        }
        return 0
    }

    // MARK: Across shards

    /// Takes the oldest segment of a shard holding at least two more than this
    /// one, which evicts it first. Only `tryLock`: a busy shard is skipped.
    private mutating func takeSegmentFromOtherShard(now: ServerTime) -> Bool {
        let count = context.shardCount
        guard count > 1 else { return false }
        for step in 1..<count {
            let other = context.shards[(index + step) & (count - 1)]
            guard other.pointee.lock.tryLock() else { continue }
            var taken: UInt32 = 0
            if other.pointee.segmentCount > segmentCount + 1 {
                let victim = other.pointee.oldestEvacuable(allowHead: false)
                if victim != 0 && other.pointee.evacuate(victim, mayEvict: true, now: now) {
                    taken = victim
                }
            }
            other.pointee.drainPendingLarge()
            other.pointee.lock.unlock()
            if taken != 0 {
                appendSegment(taken)
                return true
            }
        }
        return false
    }

    /// Has another shard (holding at least `minimum` segments) give one back to the pool.
    private func releaseSegmentOfOtherShard(minimum: Int, now: ServerTime) -> Bool {
        let count = context.shardCount
        guard count > 1 else { return false }
        for step in 1..<count {
            let other = context.shards[(index + step) & (count - 1)]
            guard other.pointee.lock.tryLock() else { continue }
            var released: UInt32 = 0
            if other.pointee.segmentCount >= minimum {
                let victim = other.pointee.oldestEvacuable()
                if victim != 0 && other.pointee.evacuate(victim, mayEvict: true, now: now) {
                    released = victim
                }
            }
            other.pointee.drainPendingLarge()
            other.pointee.lock.unlock()
            if released != 0 {
                context.pool.give(released, discard: true)
                return true
            }
        }
        return false
    }

    /// Has another shard give back budget: its oldest large item, or else a segment
    /// (its head if that is all it has).
    private func freeBudgetInOtherShard(now: ServerTime) -> Bool {
        let count = context.shardCount
        guard count > 1 else { return false }
        for step in 1..<count {
            let other = context.shards[(index + step) & (count - 1)]
            guard other.pointee.lock.tryLock() else { continue }
            var freed = other.pointee.evictOldestLargeItem(now: now)
            var released: UInt32 = 0
            if !freed && other.pointee.segmentCount > 0 {
                let victim = other.pointee.oldestEvacuable()
                if victim != 0 && other.pointee.evacuate(victim, mayEvict: true, now: now) {
                    released = victim
                    freed = true
                }
            }
            other.pointee.drainPendingLarge()
            other.pointee.lock.unlock()
            if released != 0 { context.pool.give(released, discard: true) }
            if freed { return true }
        }
        return false
    }

    /// Evicts the large item whose stub is oldest (not the pinned one). False if there is none.
    mutating func evictOldestLargeItem(now: ServerTime) -> Bool {
        guard large.count > 0 else { return false }
        var segment = oldest
        while segment != 0 {
            let base = segmentBase(segment)
            let end = Int(segments[Int(segment)].writeOffset)
            var read = 0
            while read < end {
                let record = ItemRef(header: base + read)
                if record.kind == .largeStub && record.bits.contains(.linked) && Int(record.clientFlags) != pinLargeSlot {
                    let slot = Int(record.clientFlags)
                    let item = LargeItem.item(inBlock: large.block(slot))
                    let expired = item.isExpired(now: now) || sequence.pointee.isFlushed(item)
                    dispose(item, handle: Arena.largeHandleBit | UInt32(slot), reclaimed: expired)
                    return true
                }
                read += record.recordSize
            }
            segment = segments[Int(segment)].next
        }
        return false
    }

    /// Gives one of this shard's segments other than the head back to the pool,
    /// pages discarded. With evictions off, only one whose live items fit into the head.
    mutating func releaseOwnSegment(now: ServerTime) -> Bool {
        if evictionsEnabled {
            let victim = oldestEvacuable(allowHead: false)
            guard victim != 0, evacuate(victim, mayEvict: true, now: now) else { return false }
            context.pool.give(victim, discard: true)
            return true
        }
        var segment = oldest
        while segment != 0 {
            let next = segments[Int(segment)].next
            if segment != head && evacuate(segment, mayEvict: false, now: now) {
                context.pool.give(segment, discard: true)
                return true
            }
            segment = next
        }
        return false
    }

    /// Makes the pool charge `bytes` for a large item, evicting if needed: whole
    /// segments of this shard (never its head, which holds the new item's stub),
    /// then of fuller shards, then large items, then any other shard's segment.
    mutating func makeBudget(_ bytes: Int, now: ServerTime) -> Bool {
        var attempts = 0
        while !context.pool.chargeLarge(bytes) {
            attempts += 1
            if attempts > 100_000 { return false }
            context.noteNow(now)
            if drainPendingLarge(keeping: pinLargeSlot) { continue }
            if releaseOwnSegment(now: now) { continue }
            guard evictionsEnabled else { return false }
            if releaseSegmentOfOtherShard(minimum: 2, now: now) { continue }
            if evictOldestLargeItem(now: now) { continue }
            if freeBudgetInOtherShard(now: now) { continue }
            return false
        }
        return true
    }
}
