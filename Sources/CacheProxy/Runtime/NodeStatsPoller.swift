import Concurrency
import EventLoop

/// Asks every live node for its `stats` every few seconds, for two reasons:
///
/// - the proxy's own `stats` reports the tier's items and memory (curr_items,
///   bytes, limit_maxbytes, evictions, ...) the way monitoring reads them from
///   one memcached; sums count a replicated item once per copy;
/// - a node restarted at once (killed and started again on its address while
///   the proxy was idle) is never marked down, yet it lost everything: its
///   `pid` and start time (`time - uptime`) tell, and it is refilled from its
///   replicas like a node that came back empty. A lost connection asks at once.
///
/// Main loop only, apart from `totals`, which any thread may read.
final class NodeStatsPoller: @unchecked Sendable {
    /// The node fields summed over the tier.
    static let summedFields = [
        "curr_items", "total_items", "bytes", "limit_maxbytes", "evictions", "reclaimed",
        "expired_unfetched", "evicted_unfetched", "get_expired", "get_flushed",
        "store_too_large", "store_no_memory",
    ]
    /// After a lost connection, how often and how many times to ask a node
    /// that does not answer yet (it may still be starting).
    static let recheckMilliseconds = 250
    static let rechecks = 20

    private let loop: EventLoop
    private let context: ProxyContext
    private var timer: EventTimer?
    private var exchanges: [ObjectIdentifier: LineExchange] = [:]
    private var recheckTimers: [ObjectIdentifier: EventTimer] = [:]
    private let latest = Locked<[String: [String: UInt64]]>([:])
    /// Told when a node turns out to be another process than before.
    private let onRestart: (BackendNode) -> Void

    init(loop: EventLoop, context: ProxyContext, intervalMilliseconds: Int = 5000,
         onRestart: @escaping (BackendNode) -> Void) {
        self.loop = loop
        self.context = context
        self.onRestart = onRestart
        let timer = EventTimer(loop: loop, milliseconds: intervalMilliseconds, repeating: true) { [unowned self] in poll() }
        timer.start()
        self.timer = timer
        loop.execute { [self] in poll() }
    }

    /// The summed fields over the nodes in the current topology, as last polled.
    func totals() -> [(String, UInt64)] {
        let identities = Set(context.topology.nodes.map(\.identity))
        let snapshot = latest.withLock { $0 }
        return NodeStatsPoller.summedFields.map { field in
            (field, snapshot.filter { identities.contains($0.key) }.reduce(UInt64(0)) { $0 &+ ($1.value[field] ?? 0) })
        }
    }

    /// What `node` last reported of the summed fields, or nil before its first answer.
    func stats(of node: BackendNode) -> [String: UInt64]? {
        latest.withLock { $0[node.identity] }
    }

    /// A worker's connection to `node` was closed by the other end: ask now
    /// which process answers there (again, for a while, if none does yet).
    func connectionLost(to node: BackendNode) {
        ask(node, retriesLeft: NodeStatsPoller.rechecks)
    }

    private func poll() {
        for node in context.topology.nodes where node.isUp { ask(node, retriesLeft: 0) }
    }

    private func ask(_ node: BackendNode, retriesLeft: Int) {
        let key = ObjectIdentifier(node)
        guard exchanges[key] == nil else { return }
        let timeout = context.topology.configuration.requestTimeoutMilliseconds
        exchanges[key] = LineExchange.run("stats\r\n", to: node.address, loop: loop, timeoutMilliseconds: timeout,
                                         dialer: context.nodeDialer) { [unowned self] outcome in
            exchanges[key] = nil
            guard case .replied(.end, let stats) = outcome else {
                if retriesLeft > 0 { recheck(node, retriesLeft: retriesLeft - 1) }
                return
            }
            record(stats, of: node)
        }
    }

    private func recheck(_ node: BackendNode, retriesLeft: Int) {
        let key = ObjectIdentifier(node)
        let timer = EventTimer(loop: loop, milliseconds: NodeStatsPoller.recheckMilliseconds, repeating: false) { [unowned self] in
            recheckTimers[key] = nil
            ask(node, retriesLeft: retriesLeft)
        }
        recheckTimers[key]?.stop()
        recheckTimers[key] = timer
        timer.start()
    }

    private func record(_ stats: [(String, String)], of node: BackendNode) {
        var values: [String: UInt64] = [:]
        var pid: UInt32?
        var uptime: UInt32?
        var time: UInt32?
        for (name, value) in stats {
            switch name {
            case "pid": pid = UInt32(value)
            case "uptime": uptime = UInt32(value)
            case "time": time = UInt32(value)
            default: if NodeStatsPoller.summedFields.contains(name) { values[name] = UInt64(value) }
            }
        }
        latest.withLock { $0[node.identity] = values }
        if let pid, let uptime, let time, time >= uptime, node.observeBoot(pid: pid, startedAt: time - uptime) {
            onRestart(node)
        }
    }
}
