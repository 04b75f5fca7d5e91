/// The per-thread command counters behind memcached's `stats`.
public enum Counter: Int, CaseIterable, Sendable {
    case cmdGet, cmdSet, cmdFlush, cmdTouch, cmdMeta
    case getHits, getMisses, getExpired, getFlushed
    case deleteHits, deleteMisses
    case incrHits, incrMisses, decrHits, decrMisses
    case casHits, casMisses, casBadval
    case touchHits, touchMisses
    case storeTooLarge, storeNoMemory
    case bytesRead, bytesWritten
    case connYields
}

/// Counters written by one worker thread only, read by whichever thread answers
/// `stats`. No atomics on the hot path: each slot is an aligned 8-byte word with a
/// single writer; a reader may see a value a few requests old, which `stats`
/// tolerates (memcached's per-thread stats make the same trade with a lock).
public final class WorkerCounters: @unchecked Sendable {
    private let slots: UnsafeMutablePointer<UInt64>

    public init() {
        slots = .allocate(capacity: Counter.allCases.count)
        slots.initialize(repeating: 0, count: Counter.allCases.count)
    }

    deinit { slots.deallocate() }

    /// Owning worker thread only.
    @inline(__always) public func add(_ counter: Counter, _ amount: UInt64 = 1) {
        // Safe because only the owning thread writes this slot.
        slots[counter.rawValue] &+= amount
    }

    /// Any thread; the value may lag the owner by a few operations.
    public subscript(counter: Counter) -> UInt64 { slots[counter.rawValue] }

    /// `stats reset`. The owner may race one increment; memcached accepts the same.
    public func reset() {
        for index in 0..<Counter.allCases.count { slots[index] = 0 }
    }
}
