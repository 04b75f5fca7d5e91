import CacheStorage
import Glibc
import Synchronization

/// The node's notion of time, as memcached keeps it: whole seconds since a start
/// instant, ticked once a second by a timer, so requests read it without a
/// system call. Expiry times from the protocol are converted here.
public final class ServerClock: Sendable {
    /// Unix time the server's clock counts from: two seconds before start, so
    /// "now" is never 0 (0 means "never" as an expiry) or 1 (an expiry of 1 means
    /// "already expired").
    public let processStarted: Int64
    private let current: Atomic<UInt32>

    /// Longest exptime read as relative seconds; larger values are Unix times.
    public static let maxRelativeExptime: Int64 = 60 * 60 * 24 * 30

    public init(unixNow: Int64 = Int64(time(nil))) {
        processStarted = unixNow - 2
        current = Atomic(2)
    }

    /// Seconds since `processStarted`.
    public var now: ServerTime { current.load(ordering: .relaxed) }

    public var unixNow: Int64 { processStarted + Int64(now) }

    /// Advances to the wall clock; called once a second by the node's timer.
    public func tick(unixNow: Int64 = Int64(time(nil))) {
        let elapsed = max(2, unixNow - processStarted)
        current.store(ServerTime(truncatingIfNeeded: elapsed), ordering: .relaxed)
    }

    /// Sets the clock directly (tests).
    public func set(_ value: ServerTime) { current.store(value, ordering: .relaxed) }

    /// memcached's `realtime(EXPTIME_TO_POSITIVE_TIME(exptime))`: 0 never expires,
    /// up to 30 days is relative, larger is a Unix time (in the past means already
    /// expired), and a negative exptime is already expired.
    public func expiry(fromExptime exptime: Int64) -> ServerTime {
        if exptime == 0 { return 0 }
        if exptime < 0 { return 1 }
        if exptime > ServerClock.maxRelativeExptime {
            if exptime <= processStarted { return 1 }
            return ServerTime(truncatingIfNeeded: exptime - processStarted)
        }
        return ServerTime(truncatingIfNeeded: Int64(now) + exptime)
    }
}
