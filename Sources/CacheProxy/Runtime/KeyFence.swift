import Synchronization

/// Orders, across all workers of one proxy, the writes of a key with each
/// other and with the proxy's own copies of it (a refill from a replica, a
/// warm-up from a previous owner).
///
/// Writes with writes. A worker sends a key's writes to its replicas over
/// its own connections, in the order it took them; two workers' connections
/// are not ordered with each other. Two clients setting one key through two
/// workers at once could then leave its replicas holding different values,
/// both acknowledged:
///
///   worker 1:  set k A --> replica 1 .............. --> replica 2
///   worker 2:  set k B ............... --> replica 1 --> replica 2 (before A)
///              replica 1 ends with B, replica 2 with A
///
/// So a stripe's writes belong to one worker at a time: a write from another
/// worker waits until the stripe's writes are all answered. One worker's own
/// writes of a stripe go out at once (its connections keep their order). A
/// worker kept waiting marks the stripe contended, and then the owner's new
/// writes wait as well, so a busy worker cannot starve another.
///
/// Writes with copies. A copy reads the value at one node and adds it at
/// others. Were a client's delete to reach those nodes between the read and
/// the add, the add would bring the deleted value back, after the client was
/// told `DELETED`:
///
///   copy:   mg k at replica ----------------------> add k at primary
///   delete:            md k at replica, at primary (DELETED)
///                                                    k is readable again
///
/// So a stripe is held either by copies or by writes, never both:
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
/// Keys hash to `stripeCount` stripes; two keys sharing one only wait for each
/// other. It orders the workers of one proxy, not several proxies (those
/// converge by `ReplicaCheck`).
/// Thread-safe.
final class KeyFence: @unchecked Sendable {
    static let stripeCount = 1 << 16
    /// Per stripe: copies under way (bits 0-15), node requests of writes under
    /// way (bits 16-46), the worker that owns those writes, plus one (bits
    /// 47-62), and whether another worker is waiting (bit 63). (Atomics
    /// cannot live in an Array; this block is allocated once.)
    private let stripes: UnsafeMutablePointer<Atomic<UInt64>>
    /// flush_all requests routed so far.
    let flushes = Atomic<Int>(0)

    private static let copyMask: UInt64 = 0xFFFF
    private static let oneWrite: UInt64 = 1 << 16
    private static let writeMask: UInt64 = 0x7FFF_FFFF << 16
    private static let ownerShift: UInt64 = 47
    private static let ownerMask: UInt64 = 0xFFFF << 47
    private static let contended: UInt64 = 1 << 63

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
        while current & KeyFence.writeMask == 0 {
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

    /// Starts `count` node requests of a write from worker `worker`; false
    /// while a copy of the stripe is under way, or writes of another worker
    /// (try again shortly).
    func tryEnterWrite(_ stripe: Int, count: Int = 1, worker: Int) -> Bool {
        let owner = UInt64(worker + 1) << KeyFence.ownerShift
        let added = KeyFence.oneWrite * UInt64(count)
        var current = stripes[stripe].load(ordering: .relaxed)
        while true {
            let desired: UInt64
            if current & KeyFence.copyMask != 0 {
                return false
            } else if current & KeyFence.writeMask == 0 {
                // Free: this worker takes it, and whoever was waiting had its turn.
                desired = owner | added
            } else if current & KeyFence.ownerMask == owner && current & KeyFence.contended == 0 {
                desired = current + added
            } else if current & KeyFence.contended != 0 {
                return false
            } else {
                desired = current | KeyFence.contended
            }
            let (done, actual) = stripes[stripe].compareExchange(expected: current, desired: desired,
                                                                 ordering: .acquiringAndReleasing)
            if done { return desired & KeyFence.contended == 0 }
            current = actual
        }
    }

    /// Adds `count` node requests to a write that holds the stripe (a copy of
    /// its result to the other replicas), so the stripe stays with this worker
    /// until those are answered too, whoever is waiting.
    func extendWrite(_ stripe: Int, count: Int) {
        stripes[stripe].wrappingAdd(KeyFence.oneWrite * UInt64(count), ordering: .acquiringAndReleasing)
    }

    /// One node request of a write was answered (or failed).
    func exitWrite(_ stripe: Int) {
        stripes[stripe].wrappingSubtract(KeyFence.oneWrite, ordering: .releasing)
    }
}
