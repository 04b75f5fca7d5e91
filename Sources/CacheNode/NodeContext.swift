import Concurrency
import EventLoop
import CacheStorage
import Synchronization

/// State shared by every worker of one node: settings, storage, clock and the
/// node-wide gauges. Thread-safe.
public final class NodeContext: Sendable {
    public let settings: NodeSettings
    public let storage: ItemStore
    public let clock: ServerClock
    /// One set of counters per worker, summed by `stats`.
    public let workerCounters: [WorkerCounters]
    public let currentConnections = Atomic<Int>(0)
    public let totalConnections = Atomic<Int>(0)
    public let rejectedConnections = Atomic<Int>(0)
    /// Descriptors the node holds besides client connections (listeners, event
    /// loops, wake-ups, signals), counted once at start for `stats` `reserved_fds`.
    public let reservedDescriptors = Atomic<Int>(0)
    /// Times accepting stopped for lack of descriptors, and for how long in all (µs).
    public let listenDisabled = Atomic<Int>(0)
    public let listenDisabledMicroseconds = Atomic<Int>(0)
    /// `lru_crawler crawl` passes and metadumps started (`lru_crawler_starts`).
    public let crawlerStarts = Atomic<Int>(0)
    /// `lru_crawler disable` (or `-o no_lru_crawler`) turns crawl and metadump
    /// away until `lru_crawler enable`; background reclaim goes on regardless.
    public let crawlerEnabled: Atomic<Bool>
    /// Background maintenance passes (expiry reclaim and compaction, once a
    /// second), reported as memcached's LRU maintainer `lru_maintainer_juggles`.
    public let maintenancePasses = Atomic<Int>(0)
    /// Port actually bound (differs from settings when `-p 0`).
    public let boundPort = Atomic<Int>(0)
    public let verbosity: Atomic<Int>
    /// `stats detail`: per-prefix get/set/delete counts.
    public let prefixStatistics: PrefixStatistics
    /// Flush boundary currently in force (memcached's `settings.oldest_live`), for `stats settings`.
    public let oldestLive = Atomic<UInt32>(0)
    private let shutdownHandler: Locked<(@Sendable () -> Void)?> = Locked(nil)

    /// The TLS context of `-Z` listeners, or nil.
    public let tls: TLSServerContext?

    /// `-Y`: the credentials every connection must show first, or nil.
    public let authentication: AsciiAuthentication?
    public let authCommands = Atomic<Int>(0)
    public let authErrors = Atomic<Int>(0)
    /// A refused login, said on standard error (at most a line a second).
    public let authFailures = ThrottledLog()
    /// A TLS client on a plain-text listener, said the same way.
    public let plainTextTLSClients = ThrottledLog()

    public init(settings: NodeSettings, storage: ItemStore, clock: ServerClock, tls: TLSServerContext? = nil,
                authentication: AsciiAuthentication? = nil) {
        self.settings = settings
        self.tls = tls
        self.authentication = authentication
        self.storage = storage
        self.clock = clock
        self.workerCounters = (0..<settings.threads).map { _ in WorkerCounters() }
        self.verbosity = Atomic(settings.verbosity)
        self.crawlerEnabled = Atomic(settings.crawlerEnabled)
        self.prefixStatistics = PrefixStatistics(delimiter: settings.prefixDelimiter, enabled: settings.detailEnabled)
    }

    /// Sums a counter over every worker.
    public func total(_ counter: Counter) -> UInt64 {
        workerCounters.total(counter)
    }

    public func onShutdown(_ handler: @escaping @Sendable () -> Void) {
        shutdownHandler.withLock { $0 = handler }
    }

    /// The `shutdown` command (enabled with `-A`).
    public func requestShutdown() {
        let handler = shutdownHandler.withLock { $0 }
        handler?()
    }
}
