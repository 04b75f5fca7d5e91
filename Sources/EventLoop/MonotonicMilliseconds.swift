import Glibc

/// Coarse monotonic milliseconds (a few ms of resolution, read without a system call).
@inlinable
public func monotonicMilliseconds() -> Int64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC_COARSE, &spec)
    return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec / 1_000_000)
}
