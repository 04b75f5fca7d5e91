import EventLoop
import Concurrency
import Synchronization

/// What all workers of one proxy share: counters to sum, connection gauges, and
/// the topology in force (for `stats`, which any worker may answer). Thread-safe.
final class ProxyContext: Sendable {
    let startedAt: Int64
    let counters: [ProxyCounters]
    /// Each worker's request latency by `RequestClass`.
    let requestLatency: [LatencyHistograms]
    let currentConnections = Atomic<Int>(0)
    let rejectedConnections = Atomic<Int>(0)
    let reloads = Atomic<Int>(0)
    let reloadFailures = Atomic<Int>(0)
    /// What the rebalance has done (docs/membership.md, "Rebalance").
    let rebalance = Rebalancer.Progress()
    /// Discovery (`discovery:`): look-ups that gave a node list, lists that
    /// differed from the running one and were installed, and look-ups that
    /// failed or gave nothing (or a list that could not be installed).
    let discoveryLookups = Atomic<Int>(0)
    let discoveryChanges = Atomic<Int>(0)
    let discoveryFailures = Atomic<Int>(0)
    /// Orders the proxy's own copies of a key and clients' writes of it.
    let fence = KeyFence()
    private let current: Locked<Topology>
    /// The nodes' own counters, summed and per node (set once the main loop starts polling).
    private let nodeTotals = Locked<(@Sendable () -> [(String, UInt64)])?>(nil)
    private let perNodeStats = Locked<(@Sendable (BackendNode) -> [String: UInt64]?)?>(nil)

    /// How nodes are reached (`node_tls:`), and the TLS clients connect with (`tls:`).
    let nodeDialer: NodeDialer
    let clientTLS: TLSServerContext?
    /// Says (at most once a second) that a TLS client reached a plain-text listener.
    let plainTextTLSClient: @Sendable (String) -> Void

    init(workers: Int, topology: Topology, startedAt: Int64, nodeDialer: NodeDialer = .plain,
         clientTLS: TLSServerContext? = nil, plainTextTLSClient: @escaping @Sendable (String) -> Void = { _ in }) {
        self.nodeDialer = nodeDialer
        self.clientTLS = clientTLS
        self.plainTextTLSClient = plainTextTLSClient
        self.counters = (0..<workers).map { _ in ProxyCounters() }
        self.requestLatency = (0..<workers).map { _ in LatencyHistograms(series: RequestClass.allCases.count) }
        self.current = Locked(topology)
        self.startedAt = startedAt
    }

    var topology: Topology { current.withLock { $0 } }
    func install(_ topology: Topology) { current.withLock { $0 = topology } }

    func total(_ counter: ProxyCounter) -> UInt64 { counters.total(counter) }

    func reportNodeStats(totals: @escaping @Sendable () -> [(String, UInt64)],
                         perNode: @escaping @Sendable (BackendNode) -> [String: UInt64]?) {
        nodeTotals.withLock { $0 = totals }
        perNodeStats.withLock { $0 = perNode }
    }

    /// What one node last reported (curr_items, bytes, ...), or nil before it answered a poll.
    func nodeStats(of node: BackendNode) -> [String: UInt64]? {
        perNodeStats.withLock { $0 }?(node)
    }

    /// curr_items, bytes, evictions, ... summed over the nodes (empty before the first poll).
    func summedNodeStats() -> [(String, UInt64)] {
        nodeTotals.withLock { $0 }?() ?? []
    }
}
