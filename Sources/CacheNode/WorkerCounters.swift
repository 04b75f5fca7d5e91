import EventLoop

/// The per-thread command counters behind memcached's `stats`.
public enum Counter: Int, CaseIterable, Sendable {
    case cmdGet, cmdSet, cmdFlush, cmdTouch, cmdMeta
    case getHits, getMisses, getExpired, getFlushed
    case deleteHits, deleteMisses
    case incrHits, incrMisses, decrHits, decrMisses
    case casHits, casMisses, casBadval
    case touchHits, touchMisses
    case storeTooLarge, storeNoMemory
    case bytesRead, bytesWritten
    case connYields
    /// Connections closed by `-o idle_timeout`.
    case idleKicks
}

/// A worker's counters.
public typealias WorkerCounters = LoopCounters<Counter>
