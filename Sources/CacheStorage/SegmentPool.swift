import Concurrency

/// The memory budget and the free segments.
///
/// The budget charge is `resident segments * segment size + large item
/// mappings`, where a resident segment is one that shards hold or that is free
/// but still has its pages (it was used and not discarded). The charge never
/// exceeds the limit: a segment is only made resident, and a large item only
/// mapped, after the charge was taken; so the store's RSS stays within the
/// budget whatever the mix of value sizes (hash tables and metadata aside).
///
/// Free segments come in two lists: resident ones, handed out first and for
/// free, and clean ones (never touched, or discarded with MADV_DONTNEED), which
/// cost budget to hand out. When large items need budget, resident free segments
/// are discarded first.
///
/// Locking: the pool's lock is the innermost lock of the store: callers may hold
/// one shard lock, and nothing here takes a shard lock.
final class SegmentPool: @unchecked Sendable {
    struct Snapshot {
        var limit = 0
        var charge = 0
        var peakCharge = 0
        var residentSegments = 0
        var freeResidentSegments = 0
        var freeCleanSegments = 0
        var largeBytes = 0
        var touchedSegments = 0
    }

    private let lock = PThreadMutex()
    private let arena: Arena
    private let segmentSize: Int
    private var limit: Int
    private var residentSegments = 0
    private var largeBytes = 0
    private var peakCharge = 0
    private var freeResident: UInt32 = 0
    private var freeResidentCount = 0
    private var freeClean: UInt32 = 0
    private var freeCleanCount = 0
    /// Segments from here on were never handed out.
    private var nextUntouched: UInt32 = 1

    init(arena: Arena, limit: Int) {
        self.arena = arena
        self.segmentSize = arena.segmentSize
        self.limit = limit
    }

    deinit { lock.destroy() }

    private var charge: Int { residentSegments * segmentSize + largeBytes }

    private func notePeak() {
        peakCharge = max(peakCharge, charge)
    }

    /// A segment for a shard, or 0 when the budget (or the arena) is exhausted.
    func take() -> UInt32 {
        lock.lock()
        defer { lock.unlock() }
        if freeResident != 0 {
            let segment = freeResident
            freeResident = arena.segments[Int(segment)].next
            freeResidentCount -= 1
            return segment
        }
        guard charge + segmentSize <= limit else { return 0 }
        let segment: UInt32
        if freeClean != 0 {
            segment = freeClean
            freeClean = arena.segments[Int(segment)].next
            freeCleanCount -= 1
        } else if Int(nextUntouched) < arena.segmentCount {
            segment = nextUntouched
            nextUntouched += 1
        } else {
            return 0
        }
        residentSegments += 1
        notePeak()
        return segment
    }

    /// Takes back a segment no shard refers to any more. With `discard` (or when
    /// the budget shrank below the charge) its pages go back to the kernel.
    func give(_ segment: UInt32, discard: Bool) {
        lock.lock()
        let mustDiscard = discard || charge > limit
        if !mustDiscard {
            arena.segments[Int(segment)].next = freeResident
            freeResident = segment
            freeResidentCount += 1
            lock.unlock()
            return
        }
        lock.unlock()
        // Outside the lock, while still counted as resident, so the charge never understates RSS.
        arena.discard(segment)
        lock.lock()
        residentSegments -= 1
        arena.segments[Int(segment)].next = freeClean
        freeClean = segment
        freeCleanCount += 1
        lock.unlock()
    }

    /// Charges a large item's mapping, discarding free resident segments to make
    /// room if needed. False when the budget cannot hold it without evictions.
    func chargeLarge(_ bytes: Int) -> Bool {
        while true {
            lock.lock()
            if charge + bytes <= limit {
                largeBytes += bytes
                notePeak()
                lock.unlock()
                return true
            }
            lock.unlock()
            if !discardOneFreeResident() { return false }
        }
    }

    func dischargeLarge(_ bytes: Int) {
        lock.lock()
        largeBytes -= bytes
        lock.unlock()
    }

    /// Gives one free resident segment's pages back to the kernel. False if there is none.
    func discardOneFreeResident() -> Bool {
        lock.lock()
        guard freeResident != 0 else {
            lock.unlock()
            return false
        }
        let segment = freeResident
        freeResident = arena.segments[Int(segment)].next
        freeResidentCount -= 1
        lock.unlock()
        give(segment, discard: true)
        return true
    }

    /// Is the charge above the limit (after the limit shrank)?
    var isOverLimit: Bool {
        lock.lock()
        defer { lock.unlock() }
        return charge > limit
    }

    var currentLimit: Int {
        lock.lock()
        defer { lock.unlock() }
        return limit
    }

    func setLimit(_ bytes: Int) {
        lock.lock()
        limit = max(0, bytes)
        lock.unlock()
    }

    func resetPeak() {
        lock.lock()
        peakCharge = charge
        lock.unlock()
    }

    func snapshot() -> Snapshot {
        lock.lock()
        defer { lock.unlock() }
        return Snapshot(
            limit: limit, charge: charge, peakCharge: peakCharge, residentSegments: residentSegments,
            freeResidentSegments: freeResidentCount, freeCleanSegments: freeCleanCount,
            largeBytes: largeBytes, touchedSegments: Int(nextUntouched))
    }
}
