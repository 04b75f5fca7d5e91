/// Counters written by one loop thread only and read by whichever thread
/// reports them. No atomics on the hot path: each counter is an aligned 8-byte
/// word with a single writer; a reader may see a value a few operations old,
/// which statistics tolerate (memcached's per-thread stats make the same trade
/// with a lock).
public final class LoopCounters<Name: CaseIterable & RawRepresentable>: @unchecked Sendable where Name.RawValue == Int {
    @usableFromInline let slots: UnsafeMutablePointer<UInt64>
    private let count = Name.allCases.count

    public init() {
        slots = .allocate(capacity: count)
        slots.initialize(repeating: 0, count: count)
    }

    deinit { slots.deallocate() }

    /// Owning loop thread only.
    @inlinable public func add(_ name: Name, _ amount: UInt64 = 1) {
        // Safe because only the owning thread writes, and rawValue < count.
        slots[name.rawValue] &+= amount
    }

    /// Any thread; the value may lag the owner by a few operations.
    public subscript(name: Name) -> UInt64 { slots[name.rawValue] }

    /// Zeroes every counter (`stats reset`); the owner may race one increment.
    public func reset() {
        for index in 0..<count { slots[index] = 0 }
    }
}

extension Array {
    /// Sums one counter over a set of per-thread counter blocks.
    public func total<Name>(_ name: Name) -> UInt64 where Element == LoopCounters<Name> {
        reduce(0) { $0 &+ $1[name] }
    }
}
