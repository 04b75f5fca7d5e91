import Synchronization

/// Counters written by one loop thread only and read by whichever thread
/// reports them. Each counter is a relaxed atomic with a single writer: the
/// owner's increment is a plain load and store (no locked instruction), and a
/// reader may see a value a few operations old, which statistics tolerate
/// (memcached's per-thread stats make the same trade with a lock). Relaxed
/// atomics rather than plain words keep the cross-thread reads defined
/// (ThreadSanitizer reported them as races).
public final class LoopCounters<Name: CaseIterable & RawRepresentable>: @unchecked Sendable where Name.RawValue == Int {
    @usableFromInline let slots: UnsafeMutablePointer<Atomic<UInt64>>
    private let count = Name.allCases.count

    public init() {
        slots = .allocate(capacity: count)
        for index in 0..<count { (slots + index).initialize(to: Atomic(0)) }
    }

    deinit {
        slots.deinitialize(count: count)
        slots.deallocate()
    }

    /// Owning loop thread only.
    @inlinable public func add(_ name: Name, _ amount: UInt64 = 1) {
        // A load and a store, not an atomic add: only the owning thread writes,
        // and rawValue < count.
        let slot = slots + name.rawValue
        slot.pointee.store(slot.pointee.load(ordering: .relaxed) &+ amount, ordering: .relaxed)
    }

    /// Any thread; the value may lag the owner by a few operations.
    public subscript(name: Name) -> UInt64 { (slots + name.rawValue).pointee.load(ordering: .relaxed) }

    /// Zeroes every counter (`stats reset`); the owner may race one increment.
    public func reset() {
        for index in 0..<count { (slots + index).pointee.store(0, ordering: .relaxed) }
    }
}

extension Array {
    /// Sums one counter over a set of per-thread counter blocks.
    public func total<Name>(_ name: Name) -> UInt64 where Element == LoopCounters<Name> {
        reduce(0) { $0 &+ $1[name] }
    }
}
