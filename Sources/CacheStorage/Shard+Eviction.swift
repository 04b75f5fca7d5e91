#if canImport(Glibc)
import Glibc
#endif

/// Making room: CLOCK over segments, with the time a record waits for its
/// pass falling with its size (docs/eviction.md has the measurements behind
/// the choices).
///
/// A shard appends a record to the head of its size band (`SizeBand`: small,
/// or large when over the shard's mean item and twice the small band's mean). When that head is full it takes a
/// segment from the pool while the budget lasts. After that it makes room in
/// its own segments:
///
/// - a segment at least half dead (deletes, overwrites, lazily expired items)
///   is compacted in place, keeping every live item: no eviction needed;
/// - otherwise the segment due first (`nextToPass`) is compacted in place the
///   CLOCK way: live items read since they were written or last kept
///   (`readCount`, 0...3) slide down and stay, one read taken off; the rest are
///   unlinked (evicted, or reclaimed when expired or flushed). The segment then
///   becomes the head of the band that needed room. A pass may free little
///   when nearly everything was read; the next one goes on with the next
///   segment due. After `passesKeepingAll` such passes for one store, passes
///   keep at most half a segment: room is always found, and a store never
///   walks more than a few segments however big the cache.
///
/// When a pass is due: a segment becoming a head is due at the shard's clock
/// (the due time of the last segment passed over) plus an interval inversely
/// proportional to the square of its band's mean record size. An unread big
/// item so holds its bytes for much less time than an unread small one: it
/// holds the memory of several small items, and a miss costs the client the
/// same whatever the size (the GreedyDual-Size idea, with two bands).
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
        return fits && item.readCount > 0 ? .keep : .evict
    }

    /// Reserves `size` bytes at the write end of its band's head, making room
    /// if needed. Nil when no room can be made (evictions off, or nothing can move).
    mutating func reserve(_ size: Int, now: ServerTime) -> UnsafeMutableRawPointer? {
        let band = band(ofRecordSize: size)
        noteAppend(size, band: band)
        var attempts = 0
        while true {
            let head = head(band)
            if head != 0 {
                let offset = Int(segments[Int(head)].writeOffset)
                if segmentSize - offset >= size {
                    segments[Int(head)].writeOffset = UInt32(offset + size)
                    return segmentBase(head) + offset
                }
            }
            let fresh = context.pool.take()
            if fresh != 0 {
                appendSegment(fresh, band: band)
                continue
            }
            attempts += 1
            if attempts > segmentCount + ShardState.passesKeepingAll + 64
                || !makeHeadRoom(size, band: band, now: now, attempt: attempts) {
                return nil
            }
        }
    }

    /// Frees room in this shard's segments so that the head of `band` can take `size` bytes.
    private mutating func makeHeadRoom(_ size: Int, band: SizeBand, now: ServerTime, attempt: Int) -> Bool {
        context.noteNow(now)
        if attempt == 1, let candidate = compactionCandidate(needing: size, band: band) {
            compactInPlace(candidate, evictCold: false, into: band, now: now)
            return true
        }
        guard evictionsEnabled else { return false }
        if segmentCount < context.fairShare.load(ordering: .relaxed) && takeSegmentFromOtherShard(band: band, now: now) {
            return true
        }
        if segmentCount == 0 {
            // Nothing of our own to evict: another shard must give up a segment, or budget
            // (large items) so that the pool can hand one out. Its lock may be busy for a
            // moment (a short critical section), so try a few rounds.
            for _ in 0..<8 {
                if takeSegmentFromOtherShard(band: band, now: now) || freeBudgetInOtherShard(now: now) { return true }
            }
            return false
        }
        let keepAll = attempt <= min(segmentCount, ShardState.passesKeepingAll)
        let segment = nextToPass
        if ShardState.isEarlier(passClock, than: segments[Int(segment)].passDue) {
            passClock = segments[Int(segment)].passDue
        }
        compactInPlace(segment, evictCold: true, retainLimit: keepAll ? Int.max : segmentSize / 2, into: band, now: now)
        return true
    }

    /// A segment whose compaction keeps every live item and still frees enough:
    /// with evictions on, one at least half dead; with evictions off, the one
    /// with the least live data, if that frees `size`.
    private func compactionCandidate(needing size: Int, band: SizeBand) -> UInt32? {
        var best: UInt32 = 0
        var bestFree = 0
        var segment = firstSegment
        while segment != 0 {
            let free = segmentSize - Int(segments[Int(segment)].liveBytes)
            if evictionsEnabled && segments[Int(segment)].deadBytes >= segmentSize / 2 {
                return segment
            }
            if free > bestFree {
                best = segment
                bestFree = free
            }
            segment = self.segment(after: segment)
        }
        let head = head(band)
        if !evictionsEnabled && best != 0 && bestFree >= size && (best != head || freeBytes(in: head) < bestFree) {
            return best
        }
        return nil
    }

    /// Compacts a segment in place and makes it the head of `band`. With
    /// `evictCold`, the CLOCK pass described above, keeping at most
    /// `retainLimit` bytes; without, every live item stays. An item pinned by
    /// `preserving` stays where it is (the gap before it becomes a filler).
    mutating func compactInPlace(_ segment: UInt32, evictCold: Bool, retainLimit: Int = Int.max, into band: SizeBand,
                                 now: ServerTime) {
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
        makeHead(segment, band: band)
        counters.compactions += 1
    }

    /// Empties a segment and takes it out of its list (the caller passes it
    /// on): live items are copied into a head (`evacuationTarget`) while they
    /// fit (with `mayEvict`, only recently read ones, up to half a segment)
    /// and the rest unlinked. Without `mayEvict` it refuses unless every live
    /// item fits in the head. Never touches the segment holding the pinned record.
    mutating func evacuate(_ segment: UInt32, mayEvict: Bool, now: ServerTime) -> Bool {
        if pinHandle != 0 && self.segment(ofHandle: pinHandle) == segment { return false }
        let target = evacuationTarget(for: segment)
        let live = Int(segments[Int(segment)].liveBytes)
        if !mayEvict && live > 0 && live > freeBytes(in: target) { return false }
        let retainLimit = mayEvict ? segmentSize / 2 : Int.max
        let base = segmentBase(segment)
        let end = Int(segments[Int(segment)].writeOffset)
        var read = 0
        var retained = 0
        while read < end {
            let record = ItemRef(header: base + read)
            let size = record.recordSize
            let fits = target != 0 && retained + size <= retainLimit && freeBytes(in: target) >= size
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

    /// Where the items kept from an emptied segment go: the head of its band,
    /// or the other head when that is the segment itself; 0 if neither.
    func evacuationTarget(for segment: UInt32) -> UInt32 {
        let own = head(segments[Int(segment)].band)
        if own != 0 && own != segment { return own }
        let other = lists.small.newest == own ? lists.large.newest : lists.small.newest
        return other != segment ? other : 0
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

    /// The segment to empty when the shard gives one up: the one due for a
    /// pass first, else the first other one that is not a head; a head only
    /// with `allowHead` and when nothing else is left. Never the one holding
    /// the pinned record.
    func segmentToGiveUp(allowHead: Bool = true) -> UInt32 {
        let pinned = pinHandle != 0 ? self.segment(ofHandle: pinHandle) : 0
        let due = nextToPass
        if due != 0 && due != pinned && !isHead(due) { return due }
        var head: UInt32 = 0
        var segment = firstSegment
        while segment != 0 {
            if segment != pinned {
                if !isHead(segment) { return segment }
                if head == 0 { head = segment }
            }
            segment = self.segment(after: segment)
        }
        return allowHead ? head : 0
    }

    // MARK: Across shards

    /// Takes a segment (`segmentToGiveUp`) of a shard holding at least two more than this
    /// one, which evicts it first. Only `tryLock`: a busy shard is skipped.
    private mutating func takeSegmentFromOtherShard(band: SizeBand, now: ServerTime) -> Bool {
        let count = context.shardCount
        guard count > 1 else { return false }
        for step in 1..<count {
            let other = context.shards[(index + step) & (count - 1)]
            guard other.pointee.lock.tryLock() else { continue }
            var taken: UInt32 = 0
            if other.pointee.segmentCount > segmentCount + 1 {
                let victim = other.pointee.segmentToGiveUp(allowHead: false)
                if victim != 0 && other.pointee.evacuate(victim, mayEvict: true, now: now) {
                    taken = victim
                }
            }
            other.pointee.drainPendingLarge()
            other.pointee.lock.unlock()
            if taken != 0 {
                appendSegment(taken, band: band)
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
                let victim = other.pointee.segmentToGiveUp()
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
                let victim = other.pointee.segmentToGiveUp()
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
        var segment = firstSegment
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
            segment = self.segment(after: segment)
        }
        return false
    }

    /// Gives one of this shard's segments other than a head back to the pool,
    /// pages discarded. With evictions off, only one whose live items fit into a head.
    mutating func releaseOwnSegment(now: ServerTime) -> Bool {
        if evictionsEnabled {
            let victim = segmentToGiveUp(allowHead: false)
            guard victim != 0, evacuate(victim, mayEvict: true, now: now) else { return false }
            context.pool.give(victim, discard: true)
            return true
        }
        var segment = firstSegment
        while segment != 0 {
            let next = self.segment(after: segment)
            if !isHead(segment) && evacuate(segment, mayEvict: false, now: now) {
                context.pool.give(segment, discard: true)
                return true
            }
            segment = next
        }
        return false
    }

    /// Makes the pool charge `bytes` for a large item, evicting if needed: whole
    /// segments of this shard (never a head: one holds the new item's stub),
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
