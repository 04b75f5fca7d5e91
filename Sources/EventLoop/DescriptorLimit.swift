import Glibc

/// The process's limit on open file descriptors (RLIMIT_NOFILE), raised at
/// start to what the configured connection limit needs, so that limit, not
/// EMFILE, is what clients meet.
public enum DescriptorLimit {
    /// Raises the soft limit to `needed` (and the hard limit too, when the
    /// process may). Returns a message for the operator when it cannot, or nil.
    public static func ensure(_ needed: Int) -> String? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
            return "cannot read the open-file limit: \(String(cString: strerror(errno)))"
        }
        let wanted = rlim_t(needed)
        if limit.rlim_cur >= wanted { return nil }
        var raised = limit
        raised.rlim_cur = wanted
        if raised.rlim_max < wanted { raised.rlim_max = wanted }
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { return nil }
        // Not allowed to raise the hard limit: go as far as it allows.
        if limit.rlim_max >= wanted {
            limit.rlim_cur = wanted
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 { return nil }
        }
        return "needs \(needed) open files but the limit is \(limit.rlim_cur) (hard \(limit.rlim_max)): "
            + "raise it (ulimit -n, LimitNOFILE= in systemd) or lower the connection limit"
    }

    /// The soft limit now in force.
    public static var current: Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        return limit.rlim_cur > rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
    }
}
