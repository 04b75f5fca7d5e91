import Concurrency
#if canImport(Glibc)
import Glibc
#endif

/// Counters of one shard, summed by `ItemStore.statistics()`.
struct ShardCounters {
    var currentItems = 0
    var totalItems = 0
    var bytes = 0
    var evictions = 0
    var reclaimed = 0
    var expiredUnfetched = 0
    var evictedUnfetched = 0
    var itemsRetained = 0
    var compactions = 0
    /// Expired or flushed items the background reclaimer unlinked (also in `reclaimed`).
    var crawlerReclaimed = 0
    /// Linked items the background reclaimer looked at.
    var crawlerItemsChecked = 0
    var segmentsTaken = 0

    /// Zeroes the counters, keeping the gauges.
    mutating func reset() {
        self = ShardCounters(currentItems: currentItems, bytes: bytes)
    }
}

/// One shard of the store: its hash table, its segments (two lists by record
/// size, each in write order, the newest its band's head where records are
/// appended), its large items, counters.
///
/// Lives in memory of its own that never moves; every field is read and
/// written only with `lock` held (`lock` itself excepted). Functions that run
/// on another shard take that shard's lock with `tryLock` only, never waiting
/// while holding their own, so no two shard locks can deadlock.
struct ShardState {
    let index: Int
    let lock = PThreadMutex()
    unowned(unsafe) let context: StoreContext
    /// The context's sequence/flush state, reached without touching the class.
    let sequence: UnsafeMutablePointer<StoreSequence>
    let arenaBase: UnsafeMutableRawPointer
    let segments: UnsafeMutablePointer<SegmentInfo>
    let segmentShift: Int
    let segmentSize: Int
    /// Records bigger than this become large items.
    let largeThreshold: Int
    let itemSizeMax: Int
    let evictionsEnabled: Bool
    let casEnabled: Bool

    // Read by every lookup; written only when the table grows or a large item comes or goes.
    var table: HashTable
    var large = LargeItemTable()
    /// Large items to free when the lock is released (slot + 1; 0 = none):
    /// unlinked ones stay readable until then, unlinked-and-never-linked ones
    /// are not leaked.
    var pendingLarge: UInt32 = 0

    /// Keeps what every store writes (below) off the cache lines that lookups
    /// read (above): another core's store would otherwise make them miss.
    var separator: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)

    /// This shard's segments, a list per size band; each list's newest segment
    /// is the band's head, where its records are appended.
    var lists = SegmentLists()
    var segmentCount = 0
    /// The eviction clock: the `passDue` of the last segment passed over.
    var passClock: UInt64 = 0
    /// During `allocate(preserving:)`: the arena handle of the record that must
    /// not move (the item, or a large item's stub), and a large item's slot.
    var pinHandle: UInt32 = 0
    var pinLargeSlot = -1
    var counters = ShardCounters()
    /// Where the background reclaimer goes on (segment and its epoch; 0 = start of the list).
    var reclaimCursor: UInt32 = 0
    var reclaimEpoch: UInt32 = 0

    init(index: Int, context: StoreContext, configuration: StorageConfiguration, largeThreshold: Int, bucketCount: Int) {
        self.index = index
        self.context = context
        sequence = context.sequence
        arenaBase = context.arena.base
        segments = context.arena.segments
        segmentShift = context.arena.segmentShift
        segmentSize = context.arena.segmentSize
        self.largeThreshold = largeThreshold
        itemSizeMax = configuration.itemSizeMax
        evictionsEnabled = configuration.evictionsEnabled
        casEnabled = configuration.casEnabled
        table = HashTable(bucketCount: bucketCount)
    }

    /// Frees what the shard owns outside the arena (at store teardown).
    mutating func destroy() {
        for slot in 0..<large.capacity {
            if let block = large.blocks[slot] {
                let item = LargeItem.item(inBlock: block)
                LargeItem.unmap(block, bytes: LargeItem.mappedSize(recordSize: item.recordSize))
            }
        }
        large.deallocate()
        table.deallocate()
        lock.destroy()
    }

    // MARK: Addressing

    @inline(__always)
    func record(_ handle: UInt32) -> ItemRef {
        if handle & Arena.largeHandleBit != 0 {
            return LargeItem.item(inBlock: large.block(Int(handle & ~Arena.largeHandleBit)))
        }
        // Safe because arena handles are offsets / 8 of records inside the reservation.
        return ItemRef(header: arenaBase + (Int(handle) << 3))
    }

    @inline(__always)
    func handle(of item: ItemRef) -> UInt32 {
        if item.bits.contains(.large) {
            return Arena.largeHandleBit | LargeItem.slot(of: item)
        }
        return UInt32(truncatingIfNeeded: (item.header - arenaBase) >> 3)
    }

    @inline(__always)
    func segment(ofHandle handle: UInt32) -> UInt32 {
        UInt32(truncatingIfNeeded: (Int(handle) << 3) >> segmentShift)
    }

    @inline(__always)
    func segmentBase(_ segment: UInt32) -> UnsafeMutableRawPointer {
        arenaBase + (Int(segment) << segmentShift)
    }

    @inline(__always)
    func handle(ofRecordAt pointer: UnsafeMutableRawPointer) -> UInt32 {
        UInt32(truncatingIfNeeded: (pointer - arenaBase) >> 3)
    }

    @inline(__always)
    static func keysEqual(_ item: ItemRef, _ key: UnsafeRawBufferPointer) -> Bool {
        guard item.keyLength == key.count else { return false }
        guard let bytes = key.baseAddress, key.count > 0 else { return true }
        // Safe because both ranges hold key.count bytes (the lengths are equal).
        return memcmp(item.keyStart, bytes, key.count) == 0
    }

    /// The chain slot (bucket head or a `next` field) that holds `handle`, or nil.
    func chainSlot(of handle: UInt32, hash: UInt64) -> UnsafeMutableRawPointer? {
        var slot = table.slot(for: hash)
        while true {
            // Safe because a chain slot is a bucket or the `next` field of a linked record.
            let current = slot.load(as: UInt32.self)
            if current == 0 { return nil }
            if current == handle { return slot }
            slot = record(current).nextSlot
        }
    }

    // MARK: Lookup

    mutating func lookup(key: UnsafeRawBufferPointer, hash: UInt64, now: ServerTime, bump: Bool, fetch: Bool) -> LookupResult {
        sequence.pointee.applyPendingFlush(now: now)
        var slot = table.slot(for: hash)
        while true {
            // Safe because a chain slot is a bucket or the `next` field of a linked record.
            let current = slot.load(as: UInt32.self)
            if current == 0 { return .miss }
            let item = record(current)
            if ShardState.keysEqual(item, key) {
                if item.isExpired(now: now) {
                    unlink(item, handle: current, slot: slot, freeLargeNow: false)
                    return .expired
                }
                if sequence.pointee.isFlushed(item) {
                    unlink(item, handle: current, slot: slot, freeLargeNow: false)
                    return .flushed
                }
                if bump {
                    item.noteRead()
                    item.lastAccessTime = now
                }
                if fetch { item.bits.insert(.fetched) }
                return .hit(item)
            }
            slot = item.nextSlot
        }
    }

    // MARK: Allocate

    mutating func allocate(key: UnsafeRawBufferPointer, valueLength: Int, clientFlags: UInt32, expiry: ServerTime,
                           now: ServerTime, preserving: ItemRef?) -> Result<ItemRef, AllocationFailure> {
        guard key.count <= ItemLayout.maxKeyLength, valueLength >= 0, valueLength <= Int(UInt32.max) else {
            return .failure(.tooLarge)
        }
        let total = ItemLayout.headerSize + key.count + valueLength
        guard total <= itemSizeMax else { return .failure(.tooLarge) }
        let size = ItemLayout.recordSize(keyLength: key.count, valueLength: valueLength)
        if let preserving { pin(preserving) }
        defer { unpin() }
        let isLarge = size > largeThreshold
        let item: ItemRef
        if isLarge {
            guard let large = allocateLarge(size: size, now: now) else { return .failure(.outOfMemory) }
            item = large
        } else {
            guard let start = reserve(size, now: now) else { return .failure(.outOfMemory) }
            item = ItemRef(header: start)
        }
        let bits: ItemBits = isLarge ? [.large] : []
        item.initializeHeader(keyLength: key.count, valueLength: valueLength,
                              bits: casEnabled ? bits : bits.union(.casHidden),
                              clientFlags: clientFlags, expiry: expiry, now: now)
        if let bytes = key.baseAddress, key.count > 0 {
            // Safe because the record has room for the key right after the header.
            item.keyStart.copyMemory(from: bytes, byteCount: key.count)
        }
        return .success(item)
    }

    private mutating func pin(_ item: ItemRef) {
        if item.bits.contains(.large) {
            pinHandle = LargeItem.stubHandle(of: item)
            pinLargeSlot = Int(LargeItem.slot(of: item))
        } else {
            pinHandle = handle(of: item)
            pinLargeSlot = -1
        }
    }

    private mutating func unpin() {
        pinHandle = 0
        pinLargeSlot = -1
    }

    /// Maps a large item (its header bits say `.large`), charges it to the
    /// budget and writes its stub into the head segment.
    private mutating func allocateLarge(size: Int, now: ServerTime) -> ItemRef? {
        let mapped = LargeItem.mappedSize(recordSize: size)
        // The stub first, written dead so the segment stays walkable if we give up;
        // making budget afterwards never touches this shard's head, where it lies.
        guard let stub = reserve(ItemLayout.headerSize, now: now) else { return nil }
        let stubRecord = ItemRef(header: stub)
        stubRecord.initializeStub(slot: 0)
        guard makeBudget(mapped, now: now) else { return nil }
        guard let block = LargeItem.map(mapped) else {
            context.pool.dischargeLarge(mapped)
            return nil
        }
        let slot = large.insert(block, mappedSize: mapped)
        LargeItem.initializePrefix(block: block, slot: slot, stubHandle: handle(ofRecordAt: stub))
        stubRecord.initializeStub(slot: slot)
        let item = LargeItem.item(inBlock: block)
        item.bits = .large
        // Not linked yet: freed when the lock is released unless linked by then.
        schedulePendingFree(item, slot: slot)
        return item
    }

    // MARK: Link, unlink, CAS

    mutating func link(_ item: ItemRef, hash: UInt64, now: ServerTime) -> UInt64 {
        sequence.pointee.applyPendingFlush(now: now)
        if item.bits.contains(.linked) { return assignNewCas(item) }
        let itemHandle = handle(of: item)
        let key = UnsafeRawBufferPointer(item.key)
        var slot = table.slot(for: hash)
        while true {
            // Safe because a chain slot is a bucket or the `next` field of a linked record.
            let current = slot.load(as: UInt32.self)
            if current == 0 { break }
            let other = record(current)
            if ShardState.keysEqual(other, key) {
                unlink(other, handle: current, slot: slot, freeLargeNow: false)
                break
            }
            slot = other.nextSlot
        }
        let bucket = table.slot(for: hash)
        // Safe because `bucket` is this hash's chain head inside the table.
        item.next = bucket.load(as: UInt32.self)
        bucket.storeBytes(of: itemHandle, as: UInt32.self)
        var bits = item.bits
        let unique: UInt64
        if bits.contains(.explicitCas) {
            // The client chose the CAS (meta `E`) before linking: keep it.
            unique = item.rawCas
        } else {
            unique = sequence.pointee.next()
            item.rawCas = unique
        }
        bits.insert(.linked)
        item.bits = bits
        item.lastAccessTime = now
        if bits.contains(.large) {
            let stub = LargeItem.stubHandle(of: item)
            let stubRecord = record(stub)
            stubRecord.bits = .linked
            segments[Int(segment(ofHandle: stub))].liveBytes += UInt32(ItemLayout.headerSize)
        } else {
            segments[Int(segment(ofHandle: itemHandle))].liveBytes += UInt32(item.recordSize)
        }
        counters.currentItems += 1
        counters.totalItems += 1
        counters.bytes += item.totalSize
        if table.isMigrating || table.needsGrowth(items: counters.currentItems) {
            growTable()
        }
        return casEnabled ? unique : 0
    }

    /// Starts doubling the table if due, and moves a few old buckets over.
    private mutating func growTable() {
        if !table.isMigrating { table.startGrowth() }
        let base = arenaBase
        let largeItems = large
        table.migrate(limit: HashTable.bucketsPerStep) { handle in
            if handle & Arena.largeHandleBit != 0 {
                return LargeItem.item(inBlock: largeItems.block(Int(handle & ~Arena.largeHandleBit)))
            }
            return ItemRef(header: base + (Int(handle) << 3))
        }
    }

    /// The public unlink: by item, tolerant of an item that is not linked.
    mutating func unlink(_ item: ItemRef, hash: UInt64) {
        guard item.bits.contains(.linked) else { return }
        let itemHandle = handle(of: item)
        var slot = chainSlot(of: itemHandle, hash: hash)
        if slot == nil {
            // A caller passed the wrong hash; the key's own hash finds it.
            slot = chainSlot(of: itemHandle, hash: KeyHash.hash(UnsafeRawBufferPointer(item.key)))
        }
        guard let slot else { preconditionFailure("linked item missing from its hash chain") }
        unlink(item, handle: itemHandle, slot: slot, freeLargeNow: false)
    }

    /// Removes a linked item found at `slot`. A large item is freed now only on
    /// eviction paths (where every ItemRef is already invalid); otherwise when
    /// the lock is released.
    mutating func unlink(_ item: ItemRef, handle itemHandle: UInt32, slot: UnsafeMutableRawPointer, freeLargeNow: Bool) {
        // Safe because `slot` is the chain slot that holds this item (found by the caller under the lock).
        slot.storeBytes(of: item.next, as: UInt32.self)
        item.bits.remove(.linked)
        counters.currentItems -= 1
        counters.bytes -= item.totalSize
        if item.bits.contains(.large) {
            let stub = LargeItem.stubHandle(of: item)
            record(stub).bits = []
            segments[Int(segment(ofHandle: stub))].liveBytes -= UInt32(ItemLayout.headerSize)
            let slotIndex = itemHandle & ~Arena.largeHandleBit
            if freeLargeNow && !LargeItem.isPending(item) {
                freeLarge(item, slot: Int(slotIndex))
            } else {
                schedulePendingFree(item, slot: slotIndex)
            }
        } else {
            segments[Int(segment(ofHandle: itemHandle))].liveBytes -= UInt32(item.recordSize)
        }
    }

    mutating func assignNewCas(_ item: ItemRef) -> UInt64 {
        let unique = sequence.pointee.next()
        item.rawCas = unique
        item.bits.remove(.explicitCas)
        return casEnabled ? unique : 0
    }

    // MARK: Large item lifetime

    private mutating func schedulePendingFree(_ item: ItemRef, slot: UInt32) {
        if LargeItem.isPending(item) { return }
        LargeItem.setPending(item, true)
        LargeItem.setPendingNext(of: item, pendingLarge)
        pendingLarge = slot + 1
    }

    /// Frees the pending large items that are not linked (any more, or ever),
    /// except the one in `keepSlot`. Returns whether it freed any.
    @discardableResult
    mutating func drainPendingLarge(keeping keepSlot: Int = -1) -> Bool {
        var freed = false
        var kept: UInt32 = 0
        var next = pendingLarge
        pendingLarge = 0
        while next != 0 {
            let slot = Int(next - 1)
            let item = LargeItem.item(inBlock: large.block(slot))
            next = LargeItem.pendingNext(of: item)
            if slot == keepSlot {
                LargeItem.setPendingNext(of: item, kept)
                kept = UInt32(slot + 1)
                continue
            }
            LargeItem.setPending(item, false)
            if !item.bits.contains(.linked) {
                freeLarge(item, slot: slot)
                freed = true
            }
        }
        pendingLarge = kept
        return freed
    }

    private mutating func freeLarge(_ item: ItemRef, slot: Int) {
        let mapped = LargeItem.mappedSize(recordSize: item.recordSize)
        let block = LargeItem.block(of: item)
        large.remove(slot, mappedSize: mapped)
        LargeItem.unmap(block, bytes: mapped)
        context.pool.dischargeLarge(mapped)
    }

    // MARK: Segment lists

    /// The band a record of `size` bytes is appended to: `large` when it is
    /// bigger than the shard's mean item and than twice the small band's mean
    /// record, so that values of nearly one size all stay in one band.
    @inline(__always)
    func band(ofRecordSize size: Int) -> SizeBand {
        size * counters.currentItems > counters.bytes && size > 2 * Int(lists.small.meanRecordSize) ? .large : .small
    }

    @inline(__always)
    func head(_ band: SizeBand) -> UInt32 {
        lists[band].newest
    }

    @inline(__always)
    func isHead(_ segment: UInt32) -> Bool {
        segment == lists.small.newest || segment == lists.large.newest
    }

    func freeBytes(in segment: UInt32) -> Int {
        segment == 0 ? 0 : segmentSize - Int(segments[Int(segment)].writeOffset)
    }

    /// The first of all the shard's segments, in the order `segment(after:)` walks them.
    var firstSegment: UInt32 {
        lists.small.oldest != 0 ? lists.small.oldest : lists.large.oldest
    }

    /// The next segment of a walk over all of them: the small list, then the large one.
    func segment(after segment: UInt32) -> UInt32 {
        let next = segments[Int(segment)].next
        if next != 0 || segments[Int(segment)].band == .large { return next }
        return lists.large.oldest
    }

    /// The segment the next eviction pass goes over: the oldest of the band
    /// whose oldest is due first.
    var nextToPass: UInt32 {
        let small = lists.small.oldest
        let large = lists.large.oldest
        if small == 0 || large == 0 { return small | large }
        return ShardState.isEarlier(segments[Int(large)].passDue, than: segments[Int(small)].passDue) ? large : small
    }

    /// Clock values compared as serial numbers, so that a wrapped clock still orders.
    @inline(__always)
    static func isEarlier(_ a: UInt64, than b: UInt64) -> Bool {
        Int64(bitPattern: a &- b) < 0
    }

    /// How far past the clock a segment opened now for `band` is due for a
    /// pass: inversely to the square of the band's mean record size, so an
    /// unread record holds its bytes for a time that falls as it grows; the
    /// large band's at least 1/64 of the small band's, so that big items read
    /// now and then still stay (docs/eviction.md).
    func passInterval(_ band: SizeBand) -> UInt64 {
        func inverseSquare(_ band: SizeBand) -> UInt64 {
            let mean = UInt64(max(ItemLayout.headerSize, Int(lists[band].meanRecordSize)))
            return max(1, (1 << 32) / (mean * mean))
        }
        let small = inverseSquare(.small)
        return band == .small ? small : max(inverseSquare(.large), small / ShardState.largeIntervalFloor)
    }

    /// The large band's pass interval is at least the small band's divided by this.
    static let largeIntervalFloor: UInt64 = 64

    /// Counts a record appended to `band` into its mean size (a moving average).
    @inline(__always)
    mutating func noteAppend(_ size: Int, band: SizeBand) {
        let mean = Int(lists[band].meanRecordSize)
        lists[band].meanRecordSize = UInt32(mean == 0 ? size : mean + (size - mean) / 32)
    }

    mutating func appendSegment(_ segment: UInt32, band: SizeBand) {
        let info = SegmentInfo(writeOffset: 0, liveBytes: 0, previous: 0, next: 0,
                               epoch: segments[Int(segment)].epoch &+ 1, owner: UInt16(index + 1))
        segments[Int(segment)] = info
        attachAsHead(segment, band: band)
        counters.segmentsTaken += 1
    }

    /// Takes a segment out of its list; the caller hands it to the pool or to another shard.
    mutating func removeSegment(_ segment: UInt32) {
        detach(segment)
        segments[Int(segment)].owner = 0
        segments[Int(segment)].epoch &+= 1
        segments[Int(segment)].writeOffset = 0
        segments[Int(segment)].liveBytes = 0
    }

    /// Makes `segment` the head of `band`, keeping its contents, due for a pass
    /// as a segment opened now.
    mutating func makeHead(_ segment: UInt32, band: SizeBand) {
        detach(segment)
        attachAsHead(segment, band: band)
    }

    private mutating func attachAsHead(_ segment: UInt32, band: SizeBand) {
        let newest = lists[band].newest
        segments[Int(segment)].band = band
        segments[Int(segment)].passDue = passClock &+ passInterval(band)
        segments[Int(segment)].previous = newest
        segments[Int(segment)].next = 0
        if newest != 0 { segments[Int(newest)].next = segment } else { lists[band].oldest = segment }
        lists[band].newest = segment
        segmentCount += 1
    }

    private mutating func detach(_ segment: UInt32) {
        let band = segments[Int(segment)].band
        let previous = segments[Int(segment)].previous
        let next = segments[Int(segment)].next
        if previous != 0 { segments[Int(previous)].next = next } else { lists[band].oldest = next }
        if next != 0 { segments[Int(next)].previous = previous } else { lists[band].newest = previous }
        segments[Int(segment)].previous = 0
        segments[Int(segment)].next = 0
        segmentCount -= 1
    }

    /// Dead bytes over all segments (for `stats`).
    var deadBytes: Int {
        var total = 0
        var segment = firstSegment
        while segment != 0 {
            total += segments[Int(segment)].deadBytes
            segment = self.segment(after: segment)
        }
        return total
    }
}

/// The two kinds of segment a shard appends to: records over the shard's
/// mean item size and over twice the small band's mean go to `large` ones,
/// the others to `small` ones. An eviction pass comes to a large segment
/// sooner (docs/eviction.md).
enum SizeBand {
    case small
    case large
}

/// One band's segments in write order, oldest first; the newest is the band's head.
struct SegmentList {
    var oldest: UInt32 = 0
    var newest: UInt32 = 0
    /// Moving average of the record sizes appended to the band.
    var meanRecordSize: UInt32 = 0
}

struct SegmentLists {
    var small = SegmentList()
    var large = SegmentList()

    subscript(band: SizeBand) -> SegmentList {
        @inline(__always) get { band == .small ? small : large }
        @inline(__always) set {
            if band == .small { small = newValue } else { large = newValue }
        }
    }
}
