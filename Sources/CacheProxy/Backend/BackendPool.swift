/// A worker's connections to one node, used in turn.
final class BackendPool {
    let node: BackendNode
    private var connections: [BackendConnection?]
    private var bulkConnections: [BackendConnection?]
    private var roundRobin = 0
    /// Connections of a node that left the configuration, closed once idle.
    private var retiring: [BackendConnection] = []

    init(node: BackendNode, size: Int) {
        self.node = node
        self.connections = Array(repeating: nil, count: max(1, size))
        self.bulkConnections = Array(repeating: nil, count: max(1, size))
    }

    func connection(choice: Int?, lane: Lane, worker: ProxyWorker) -> BackendConnection? {
        let count = connections.count
        let index: Int
        if let choice {
            index = choice % count
        } else {
            index = roundRobin
            roundRobin = (roundRobin + 1) % count
        }
        switch lane {
        case .requests: return usable(&connections[index], worker: worker)
        case .bulk: return usable(&bulkConnections[index], worker: worker)
        }
    }

    private func usable(_ connection: inout BackendConnection?, worker: ProxyWorker) -> BackendConnection? {
        if let existing = connection, existing.isUsable { return existing }
        if let stale = connection, !stale.isClosed { stale.fail(.nodeDown) }
        let fresh = BackendConnection(node: node, worker: worker)
        connection = fresh
        return fresh.isClosed ? nil : fresh
    }

    private var all: [BackendConnection] { (connections + bulkConnections).compactMap { $0 } }

    var openCount: Int { all.reduce(0) { $0 + ($1.isClosed ? 0 : 1) } }

    func failAll(_ failure: BackendFailure) {
        for connection in all { connection.fail(failure) }
    }

    func retire() {
        retiring = all
        connections = connections.map { _ in nil }
        bulkConnections = bulkConnections.map { _ in nil }
        for connection in retiring where connection.pendingCount == 0 { connection.fail(.nodeDown) }
    }

    func checkDeadlines(now: Int64, requestTimeout: Int64, connectTimeout: Int64) {
        for connection in connections + bulkConnections {
            connection?.checkDeadlines(now: now, requestTimeout: requestTimeout, connectTimeout: connectTimeout)
        }
        retiring.removeAll { connection in
            if connection.pendingCount == 0 { connection.fail(.nodeDown) }
            return connection.isClosed
        }
    }
}
