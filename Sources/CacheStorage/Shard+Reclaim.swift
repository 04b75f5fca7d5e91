/// The background reclaimer's work in one shard: find expired and flushed
/// items without waiting for a lookup or an eviction to meet them, and give
/// back segments that deletes, overwrites and expiry left mostly dead.
extension ShardState {
    /// Scans up to `maxSegments` segments, going on from where the previous step
    /// stopped; unlinks at most `limit` expired or flushed items; moves the live
    /// items of a segment at most a quarter live into the head and returns the
    /// segment to the pool. Returns the items reclaimed and whether this pass
    /// over the shard is over (the next step starts again from the oldest).
    mutating func reclaimStep(now: ServerTime, limit: Int, maxSegments: Int) -> (reclaimed: Int, finished: Bool) {
        var segment = reclaimCursor
        if segment != 0 {
            let info = segments[Int(segment)]
            if info.owner != UInt16(index + 1) || info.epoch != reclaimEpoch {
                // The segment changed hands since: end this pass rather than guess where we were.
                reclaimCursor = 0
                return (0, true)
            }
        } else {
            segment = firstSegment
        }
        var reclaimed = 0
        var scanned = 0
        while segment != 0 && scanned < maxSegments {
            let next = self.segment(after: segment)
            let (count, complete) = reclaimExpired(in: segment, now: now, limit: limit - reclaimed)
            reclaimed += count
            if !complete {
                reclaimCursor = segment
                reclaimEpoch = segments[Int(segment)].epoch
                return (reclaimed, false)
            }
            compactIfMostlyDead(segment, now: now)
            segment = next
            scanned += 1
        }
        if segment == 0 {
            reclaimCursor = 0
            return (reclaimed, true)
        }
        reclaimCursor = segment
        reclaimEpoch = segments[Int(segment)].epoch
        return (reclaimed, false)
    }

    /// Unlinks expired and flushed items of one segment, at most `limit`.
    /// `complete` is false when the limit stopped the scan early.
    private mutating func reclaimExpired(in segment: UInt32, now: ServerTime, limit: Int) -> (count: Int, complete: Bool) {
        let base = segmentBase(segment)
        let end = Int(segments[Int(segment)].writeOffset)
        var read = 0
        var count = 0
        while read < end {
            let record = ItemRef(header: base + read)
            let size = record.recordSize
            if record.bits.contains(.linked) {
                counters.crawlerItemsChecked += 1
                let item: ItemRef
                let itemHandle: UInt32
                if record.kind == .largeStub {
                    let slot = Int(record.clientFlags)
                    item = LargeItem.item(inBlock: large.block(slot))
                    itemHandle = Arena.largeHandleBit | UInt32(slot)
                } else {
                    item = record
                    itemHandle = handle(ofRecordAt: record.header)
                }
                if item.isExpired(now: now) || sequence.pointee.isFlushed(item) {
                    if count >= limit { return (count, false) }
                    dispose(item, handle: itemHandle, reclaimed: true)
                    counters.crawlerReclaimed += 1
                    count += 1
                }
            }
            read += size
        }
        return (count, true)
    }

    /// Gives a segment that is at most a quarter live back to the pool, after
    /// moving its live items into a head (a fresh head of its band if the
    /// budget allows and the current one lacks room). A head mostly dead is
    /// compacted in place; fuller segments are left alone.
    private mutating func compactIfMostlyDead(_ segment: UInt32, now: ServerTime) {
        let live = Int(segments[Int(segment)].liveBytes)
        if isHead(segment) {
            // A head stays a head; at least three quarters of what it holds dead, it is compacted where it is.
            if segments[Int(segment)].deadBytes >= 3 * Int(segments[Int(segment)].writeOffset) / 4 && live < segmentSize / 4 {
                compactInPlace(segment, evictCold: false, into: segments[Int(segment)].band, now: now)
            }
            return
        }
        guard live <= segmentSize / 4 else { return }
        if live > 0 && freeBytes(in: evacuationTarget(for: segment)) < live {
            let fresh = context.pool.take()
            guard fresh != 0 else { return }
            appendSegment(fresh, band: segments[Int(segment)].band)
        }
        if evacuate(segment, mayEvict: false, now: now) {
            context.pool.give(segment, discard: false)
            counters.compactions += 1
        }
    }
}
