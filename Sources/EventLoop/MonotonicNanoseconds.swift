import Glibc

/// Monotonic nanoseconds, precise (a vDSO read, no system call): for latencies.
@inlinable
public func monotonicNanoseconds() -> Int64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec)
}
