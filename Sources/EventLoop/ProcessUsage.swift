import Glibc

/// The process figures every `stats` reply starts with, formatted as memcached
/// formats them.
public enum ProcessUsage {
    /// `pid`, `rusage_user` and `rusage_system` ("seconds.microseconds").
    public static func statsLines() -> (pid: String, user: String, system: String) {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func seconds(_ time: timeval) -> String {
            let micros = String(time.tv_usec)
            return "\(time.tv_sec).\(String(repeating: "0", count: max(0, 6 - micros.count)))\(micros)"
        }
        return (String(getpid()), seconds(usage.ru_utime), seconds(usage.ru_stime))
    }
}
