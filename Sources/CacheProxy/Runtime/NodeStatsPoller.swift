import EventLoop
import Synchronization

/// Asks every live node for its `stats` every few seconds, so the proxy's own
/// `stats` can report the tier's items and memory (curr_items, bytes,
/// limit_maxbytes, evictions, ...) the way monitoring reads them from one
/// memcached. Sums count a replicated item once per copy. Main loop only,
/// apart from `totals`, which any thread may read.
final class NodeStatsPoller: @unchecked Sendable {
    /// The node fields summed over the tier.
    static let summedFields = [
        "curr_items", "total_items", "bytes", "limit_maxbytes", "evictions", "reclaimed",
        "expired_unfetched", "evicted_unfetched", "get_expired", "get_flushed",
        "store_too_large", "store_no_memory",
    ]

    private let loop: EventLoop
    private let context: ProxyContext
    private var timer: EventTimer?
    private var exchanges: [ObjectIdentifier: LineExchange] = [:]
    private let latest = Mutex<[String: [String: UInt64]]>([:])

    init(loop: EventLoop, context: ProxyContext, intervalMilliseconds: Int = 5000) {
        self.loop = loop
        self.context = context
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

    private func poll() {
        let timeout = context.topology.configuration.requestTimeoutMilliseconds
        for node in context.topology.nodes where node.isUp && exchanges[ObjectIdentifier(node)] == nil {
            let key = ObjectIdentifier(node)
            exchanges[key] = LineExchange.run("stats\r\n", to: node.address, loop: loop, timeoutMilliseconds: timeout) { [unowned self] outcome in
                exchanges[key] = nil
                guard case .replied(.end, let stats) = outcome else { return }
                var values: [String: UInt64] = [:]
                for (name, value) in stats where NodeStatsPoller.summedFields.contains(name) { values[name] = UInt64(value) }
                latest.withLock { $0[node.identity] = values }
            }
        }
    }
}
