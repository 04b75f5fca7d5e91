/// When an open-loop run sends each request, for one worker thread.
///
/// The total rate R is split evenly over T threads; each thread sends on a grid of
/// slots `interval = T / R` seconds apart, and slot s goes to connection s mod n,
/// so every connection sends at a fixed interval of n * T / R. Threads' grids are
/// staggered by interval / T, so the process as a whole sends every 1 / R seconds:
///
///   thread 0:  |c0      |c1      |c2      |c0 ...
///   thread 1:      |c0      |c1      |c2      |c0 ...
///
/// Slot times are computed from the slot number, never accumulated, so they do not
/// drift. A request's latency is measured from its slot time, so a reply that makes
/// later requests wait (pipeline full) shows up in their latency instead of being
/// omitted (coordinated omission).
public struct OpenLoopSchedule: Sendable, Equatable {
    /// Monotonic nanoseconds of this thread's slot 0.
    public let firstSlot: UInt64
    /// Nanoseconds between this thread's slots.
    public let slotInterval: Double
    public let connectionCount: Int

    public init(totalRate: Double, threadCount: Int, threadIndex: Int, connectionsPerThread: Int, start: UInt64) {
        precondition(totalRate > 0 && threadCount > 0 && connectionsPerThread > 0)
        slotInterval = 1e9 * Double(threadCount) / totalRate
        firstSlot = start + UInt64((slotInterval * Double(threadIndex) / Double(threadCount)).rounded())
        connectionCount = connectionsPerThread
    }

    /// Nanoseconds between two sends of one connection.
    public var connectionInterval: Double { slotInterval * Double(connectionCount) }

    @inline(__always)
    public func time(ofSlot slot: UInt64) -> UInt64 {
        firstSlot + UInt64((Double(slot) * slotInterval).rounded())
    }

    @inline(__always)
    public func connection(ofSlot slot: UInt64) -> Int {
        Int(slot % UInt64(connectionCount))
    }

    /// How many slots (0, 1, ...) are due at `now`: the first slot not yet due.
    public func slotsDue(at now: UInt64) -> UInt64 {
        if now < firstSlot { return 0 }
        var slot = UInt64((Double(now - firstSlot) / slotInterval).rounded(.down))
        // The division and `time(ofSlot:)` round differently at the edges; settle exactly.
        while time(ofSlot: slot) > now && slot > 0 { slot -= 1 }
        while time(ofSlot: slot) <= now { slot += 1 }
        return slot
    }
}
