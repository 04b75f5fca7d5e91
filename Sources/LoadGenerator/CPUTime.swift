import Glibc

/// User and system CPU seconds from getrusage(2).
public struct CPUTime: Sendable, Equatable {
    public var user: Double = 0
    public var system: Double = 0

    public init(user: Double = 0, system: Double = 0) {
        self.user = user
        self.system = system
    }

    /// The calling thread's CPU time (RUSAGE_THREAD).
    public static func currentThread() -> CPUTime { sample(who: 1) }

    /// The whole process's CPU time (RUSAGE_SELF).
    public static func process() -> CPUTime { sample(who: 0) }

    private static func sample(who: Int32) -> CPUTime {
        var usage = rusage()
        // RUSAGE_THREAD (1) needs _GNU_SOURCE, which Swift's Glibc module lacks; the value is Linux ABI.
        getrusage(__rusage_who_t(who), &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return CPUTime(user: seconds(usage.ru_utime), system: seconds(usage.ru_stime))
    }

    public var total: Double { user + system }

    public static func - (lhs: CPUTime, rhs: CPUTime) -> CPUTime {
        CPUTime(user: lhs.user - rhs.user, system: lhs.system - rhs.system)
    }

    public static func + (lhs: CPUTime, rhs: CPUTime) -> CPUTime {
        CPUTime(user: lhs.user + rhs.user, system: lhs.system + rhs.system)
    }
}
