import EventLoop

/// What one running proxy says of its membership, from its `stats` and
/// `stats nodes`, as `memcluster-admin status` shows it.
public struct ProxyStatus: Sendable {
    public let proxy: HostPort
    /// `stats`, or empty when the proxy did not answer.
    public let stats: [String: String]
    public let nodes: [Node]

    public struct Node: Sendable, Equatable {
        public let address: String
        public let state: String
        /// `member`, or `leaving` while a membership change is under way.
        public let membership: String
        /// The node's item count as the proxy last polled it, when it has.
        public let items: String?
    }

    public var answered: Bool { !stats.isEmpty }
    public var generation: String? { stats["proxy_membership_generation"] }
    public var phase: String? { stats["proxy_membership_phase"] }

    /// Asks every proxy at once, each within `timeoutMilliseconds`; a proxy that
    /// does not answer is reported with empty stats.
    public static func gather(_ proxies: [HostPort], timeoutMilliseconds: Int = 2000) throws -> [ProxyStatus] {
        let loop = try EventLoop()
        var stats = Array(repeating: [(String, String)](), count: proxies.count)
        var nodeStats = stats
        var pending = 0
        var exchanges: [LineExchange] = []
        func finished() {
            pending -= 1
            if pending == 0 { loop.stop() }
        }
        for (index, proxy) in proxies.enumerated() {
            guard let address = try? SocketAddress(host: proxy.host, port: proxy.port) else { continue }
            pending += 2
            exchanges.append(LineExchange.run("stats\r\n", to: address, loop: loop, timeoutMilliseconds: timeoutMilliseconds) { outcome in
                if case .replied(.end, let lines) = outcome { stats[index] = lines }
                finished()
            })
            exchanges.append(LineExchange.run("stats nodes\r\n", to: address, loop: loop,
                                              timeoutMilliseconds: timeoutMilliseconds) { outcome in
                if case .replied(.end, let lines) = outcome { nodeStats[index] = lines }
                finished()
            })
        }
        if pending > 0 { loop.run() }
        return proxies.indices.map { index in
            ProxyStatus(proxy: proxies[index], stats: Dictionary(stats[index], uniquingKeysWith: { first, _ in first }),
                        nodes: nodes(from: nodeStats[index]))
        }
    }

    /// `node:<i>:<field>` lines as one `Node` per index, in order.
    static func nodes(from lines: [(String, String)]) -> [Node] {
        let fields = Dictionary(lines, uniquingKeysWith: { first, _ in first })
        var nodes: [Node] = []
        while let address = fields["node:\(nodes.count):address"] {
            let prefix = "node:\(nodes.count):"
            nodes.append(Node(address: address, state: fields[prefix + "state"] ?? "?",
                              membership: fields[prefix + "membership"] ?? "member", items: fields[prefix + "curr_items"]))
        }
        return nodes
    }

    /// The status of each proxy as lines for a terminal, and whether they all
    /// answered and agree on one generation.
    public static func report(_ statuses: [ProxyStatus]) -> (text: String, agree: Bool) {
        var lines: [String] = []
        for status in statuses {
            guard status.answered else {
                lines.append("proxy \(status.proxy): no answer")
                continue
            }
            var head = "proxy \(status.proxy): generation \(status.generation ?? "?"), \(status.phase ?? "?")"
            if let endsIn = status.stats["proxy_membership_change_ends_in_ms"], status.phase != "stable" {
                head += " (change ends in \(((Int(endsIn) ?? 0) + 999) / 1000) s)"
            }
            lines.append(head)
            if let pass = status.stats["proxy_rebalance_pass"], pass != "idle" {
                let stat = { (name: String) in status.stats["proxy_rebalance_\(name)"] ?? "?" }
                lines.append("  rebalance: \(pass), \(stat("keys_listed")) keys listed, \(stat("keys_copied")) copied, "
                             + "\(stat("orphans_deleted")) orphans deleted, \(stat("failures")) failures")
            }
            for node in status.nodes {
                var line = "  \(node.address)  \(node.state)"
                if node.membership != "member" { line += "  \(node.membership)" }
                if let items = node.items { line += "  \(items) items" }
                lines.append(line)
            }
        }
        let generations = Set(statuses.map { $0.generation ?? "" })
        let agree = statuses.allSatisfy(\.answered) && generations.count == 1
        let silent = statuses.filter { !$0.answered }.count
        if silent > 0 {
            lines.append("\(silent) of \(statuses.count) \(statuses.count == 1 ? "proxy" : "proxies") did not answer")
        } else if statuses.count > 1 {
            lines.append(agree ? "all \(statuses.count) proxies on generation \(generations.first!)"
                               : "proxies disagree: \(generations.count) generations among \(statuses.count) proxies")
        }
        return (lines.joined(separator: "\n"), agree)
    }
}
