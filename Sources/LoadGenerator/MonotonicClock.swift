import Glibc

/// Nanoseconds on CLOCK_MONOTONIC, the one clock that phases, schedules and
/// latencies use. A vDSO call (~20 ns): read once per wake-up, not per request.
public enum MonotonicClock {
    @inline(__always)
    public static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }

    /// Whole nanoseconds in `seconds`.
    public static func nanoseconds(_ seconds: Double) -> UInt64 {
        UInt64((seconds * 1e9).rounded())
    }
}
