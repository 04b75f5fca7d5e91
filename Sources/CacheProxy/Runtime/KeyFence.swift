import Synchronization

/// Keeps the proxy's own copies of a key (a refill from a replica, a warm-up
/// from a previous owner) and the clients' writes of that key from
/// overlapping, across all workers of one proxy.
///
/// A copy reads the value at one node and adds it at others. Were a client's
/// delete to reach those nodes between the read and the add, the add would
/// bring the deleted value back, after the client was told `DELETED`:
///
///   copy:   mg k at replica ----------------------> add k at primary
///   delete:            md k at replica, at primary (DELETED)
///                                                    k is readable again
///
/// So each key hashes to one of `stripeCount` stripes, and a stripe is held
/// either by copies or by writes, never both:
///
/// - a copy starts only when no write of its stripe is under way, and holds
///   the stripe until its last add is answered; otherwise it does not happen
///   (the read is a miss, which a cache may answer);
/// - a write is sent only when no copy of its stripe is under way (it waits
///   otherwise, a few milliseconds at most), and holds the stripe until every
///   node it was sent to answered, or failed.
///
/// So every write is ordered entirely before or entirely after every copy of
/// its key: a copy either sees the write's result at its source or is
/// overwritten by it. `flush_all` cannot wait for every stripe; it bumps
/// `flushes`, and a copy that saw one start meanwhile removes what it added.
/// It orders the workers of one proxy only, not several proxies.
/// Thread-safe.
final class KeyFence: @unchecked Sendable {
    static let stripeCount = 4096
    /// Per stripe: copies under way in the low 32 bits, writes in the high 32.
    /// (Atomics cannot live in an Array; this block is allocated once.)
    private let stripes: UnsafeMutablePointer<Atomic<UInt64>>
    /// flush_all requests routed so far.
    let flushes = Atomic<Int>(0)

    private static let oneWrite: UInt64 = 1 << 32
    private static let copyMask: UInt64 = 0xFFFF_FFFF

    init() {
        stripes = .allocate(capacity: KeyFence.stripeCount)
        for index in 0..<KeyFence.stripeCount { (stripes + index).initialize(to: Atomic<UInt64>(0)) }
    }

    deinit {
        stripes.deinitialize(count: KeyFence.stripeCount)
        stripes.deallocate()
    }

    /// The stripe of a key (by the bytes that place it on the ring).
    static func stripe(of key: UnsafeRawBufferPointer) -> Int {
        // FNV-1a: a fence needs spread, not secrecy.
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in key {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3
        }
        return Int(truncatingIfNeeded: hash ^ (hash >> 32)) & (stripeCount - 1)
    }

    /// Starts a copy; false while a write of the stripe is under way.
    func tryEnterCopy(_ stripe: Int) -> Bool {
        var current = stripes[stripe].load(ordering: .relaxed)
        while current & ~KeyFence.copyMask == 0 {
            let (done, actual) = stripes[stripe].compareExchange(expected: current, desired: current + 1,
                                                                 ordering: .acquiringAndReleasing)
            if done { return true }
            current = actual
        }
        return false
    }

    func exitCopy(_ stripe: Int) {
        stripes[stripe].wrappingSubtract(1, ordering: .releasing)
    }

    /// Starts `count` node requests of a write; false while a copy of the
    /// stripe is under way (try again shortly).
    func tryEnterWrite(_ stripe: Int, count: Int = 1) -> Bool {
        let added = KeyFence.oneWrite * UInt64(count)
        var current = stripes[stripe].load(ordering: .relaxed)
        while current & KeyFence.copyMask == 0 {
            let (done, actual) = stripes[stripe].compareExchange(expected: current, desired: current + added,
                                                                 ordering: .acquiringAndReleasing)
            if done { return true }
            current = actual
        }
        return false
    }

    /// One node request of a write was answered (or failed).
    func exitWrite(_ stripe: Int) {
        stripes[stripe].wrappingSubtract(KeyFence.oneWrite, ordering: .releasing)
    }
}
