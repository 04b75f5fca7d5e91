import Concurrency
import Synchronization

/// The CAS/sequence counter and the flush boundary, in memory of their own
/// (not a class) so that the hot paths reach them without reference counting.
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
struct StoreSequence: ~Copyable {
    /// Bumped by every link, so on a cache line of its own: sharing one with the
    /// flush fields, which every lookup reads, made lookups on one core miss
    /// whenever another core stored an item.
    private let sequence: UnsafeMutablePointer<Atomic<UInt64>>
    private let flushSequence = Atomic<UInt64>(0)
    private let flushTime = Atomic<UInt32>(0)
    private let pendingFlushAt = Atomic<UInt32>(0)
    private let flushLock = PThreadMutex()

    init() {
        // Safe because the block is initialized right away and freed once, in destroy().
        sequence = UnsafeMutableRawPointer.allocate(byteCount: CacheLine.padding, alignment: CacheLine.padding)
            .bindMemory(to: Atomic<UInt64>.self, capacity: 1)
        sequence.initialize(to: Atomic<UInt64>(0))
    }

    func destroy() {
        flushLock.destroy()
        sequence.deinitialize(count: 1)
        UnsafeMutableRawPointer(sequence).deallocate()
    }

    @inline(__always)
    func next() -> UInt64 {
        sequence.pointee.wrappingAdd(1, ordering: .relaxed).newValue
    }

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
        let boundary = next()
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
