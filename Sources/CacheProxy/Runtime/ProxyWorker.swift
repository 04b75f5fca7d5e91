import Buffers
import MemcacheProtocol
import EventLoop
import Glibc

/// One worker thread of the proxy: its event loop, the client sessions it owns,
/// and its own connections to every node. A client request is routed, sent and
/// answered on this thread alone, so the hot path takes no locks.
///
/// Writes are gathered per loop iteration: sessions and backend connections
/// that got bytes are flushed once, after every ready event has been handled
/// (a `DeferredTask`), so the requests of many clients leave for a node in one
/// write and a batch of replies leaves for each client in one write.
final class ProxyWorker: @unchecked Sendable {
    let loop: EventLoop
    let index: Int
    private(set) var topology: Topology
    let context: ProxyContext
    let counters: ProxyCounters
    /// Request latency by `RequestClass`, written by this worker alone.
    let requestLatency: LatencyHistograms
    /// When the event being handled began (monotonic ns, see `stampEvent`).
    private(set) var eventNanoseconds: Int64 = 0
    /// Told when this worker marks a node down, or when a node closed a
    /// connection to it (any thread may be told; it hops to the main loop).
    private let onNodeDown: @Sendable (BackendNode) -> Void
    private let onConnectionLost: @Sendable (BackendNode) -> Void
    private var pools: [ObjectIdentifier: BackendPool] = [:]
    private var backendsToFlush: [BackendConnection] = []
    private var sessionsToFlush: [ClientSession] = []
    private var sessions: [ObjectIdentifier: ClientSession] = [:]
    private var deadlineTimer: EventTimer?
    /// Writes waiting for a copy of their key to finish (`KeyFence`), with the
    /// request generation they belong to, tried again every millisecond.
    private var fenceWaiters: [(proxied: ProxiedRequest, tag: Int)] = []
    private var fenceTimer: EventTimer?
    /// Replica checks that saw copies differ, and when to read them again.
    private var replicaChecks: [(check: ReplicaCheck, due: Int64)] = []
    /// Flushes what this iteration gathered; created on the loop thread at first use.
    private lazy var flushTask = DeferredTask(loop: loop) { [unowned self] in flushGathered() }
    private var affinityCounter = 0
    /// Replies nobody waits for (copies to other replicas, deletes of moved keys) land here.
    private(set) lazy var discard = DiscardingReceiver(worker: self)
    let links: NodeLinks

    init(loop: EventLoop, index: Int, context: ProxyContext, links: NodeLinks = NodeLinks(),
         onNodeDown: @escaping @Sendable (BackendNode) -> Void,
         onConnectionLost: @escaping @Sendable (BackendNode) -> Void) {
        self.loop = loop
        self.index = index
        self.context = context
        self.topology = context.topology
        self.counters = context.counters[index]
        self.requestLatency = context.requestLatency[index]
        self.links = links
        self.onNodeDown = onNodeDown
        self.onConnectionLost = onConnectionLost
    }

    /// Monotonic milliseconds (coarse), or the test's clock.
    @inline(__always) var now: Int64 { links.clock?() ?? monotonicMilliseconds() }

    /// Reads the precise clock at the start of an event (client bytes, node
    /// bytes, a timer): latencies are measured between these stamps, one clock
    /// read per event rather than one per request.
    @inline(__always) func stampEvent() {
        eventNanoseconds = links.clock.map { $0() * 1_000_000 } ?? monotonicNanoseconds()
    }

    /// Starts the deadline timer. Loop thread.
    func start() {
        let timer = EventTimer(loop: loop, milliseconds: 50, repeating: true) { [unowned self] in checkDeadlines() }
        timer.start()
        deadlineTimer = timer
    }

    // MARK: Clients

    /// Takes an accepted client socket. Any thread.
    func adopt(_ fd: Int32) {
        loop.execute { [self] in
            attachSession { session in Connection(fd: fd, loop: loop, handler: session, tls: context.clientTLS) }
        }
    }

    /// Starts a client session on the connection `connect` makes for it
    /// (a socket's, or a test's embedded one). Loop thread.
    @discardableResult
    func attachSession(_ connect: (ClientSession) -> Connection) -> ClientSession {
        let session = ClientSession(worker: self)
        session.attach(connect(session))
        sessions[ObjectIdentifier(session)] = session
        counters.add(.totalConnections)
        return session
    }

    /// The proxy is shutting down: every session answers what it read, then ends.
    func drainSessions() {
        for session in sessions.values { session.drain() }
        flushGathered()
    }

    /// The proxy is exiting: closes every connection this worker holds, so
    /// nothing is left half-owned when the loop stops. Loop thread.
    func closeAll() {
        for session in Array(sessions.values) { session.connection?.close() }
        for pool in pools.values { pool.failAll(.nodeDown) }
        pools.removeAll()
        deadlineTimer?.stop()
        fenceTimer?.stop()
    }

    func sessionClosed(_ session: ClientSession) {
        sessions[ObjectIdentifier(session)] = nil
        context.currentConnections.wrappingSubtract(1, ordering: .relaxed)
    }

    var sessionCount: Int { sessions.count }

    // MARK: Backends

    /// A usable connection to `node`, opening one if needed; nil when the node is
    /// down. A session always gets the same one of the node's connections in a
    /// lane, so a client's requests to a node stay in order; internal calls take any.
    func backend(for node: BackendNode, session: ClientSession?, lane: Lane = .requests) -> BackendConnection? {
        guard node.isUp else { return nil }
        let key = ObjectIdentifier(node)
        let pool: BackendPool
        if let existing = pools[key] {
            pool = existing
        } else {
            pool = BackendPool(node: node, size: topology.configuration.backendConnections)
            pools[key] = pool
        }
        return pool.connection(choice: session?.affinity, lane: lane, worker: self)
    }

    /// Tries `proxied`'s write again shortly (its key's fence was held by a copy).
    func retryWhenFenceOpens(_ proxied: ProxiedRequest) {
        fenceWaiters.append((proxied, proxied.tag(position: 0)))
        guard fenceTimer == nil else { return }
        let timer = EventTimer(loop: loop, milliseconds: 1, repeating: true) { [unowned self] in retryFencedWrites() }
        timer.start()
        fenceTimer = timer
    }

    func retryFencedWrites() {
        stampEvent()
        let waiting = fenceWaiters
        fenceWaiters.removeAll()
        // A write still fenced out puts itself back on the list.
        for (proxied, tag) in waiting where proxied.isCurrent(tag) && !proxied.isComplete { proxied.resumeWrite() }
        if fenceWaiters.isEmpty {
            fenceTimer?.stop()
            fenceTimer = nil
        }
        flushGathered()
    }

    /// Hands out session affinities in turn.
    func nextAffinity() -> Int {
        affinityCounter &+= 1
        return affinityCounter
    }

    func backendNeedsFlush(_ backend: BackendConnection) {
        backendsToFlush.append(backend)
        flushTask.schedule()
    }

    func sessionNeedsFlush(_ session: ClientSession) {
        sessionsToFlush.append(session)
        flushTask.schedule()
    }

    /// Writes everything gathered during this loop iteration: requests to nodes
    /// first, then replies to clients.
    func flushGathered() {
        while !backendsToFlush.isEmpty || !sessionsToFlush.isEmpty {
            if !backendsToFlush.isEmpty {
                let backends = backendsToFlush
                backendsToFlush.removeAll(keepingCapacity: true)
                for backend in backends { backend.flush() }
            }
            if !sessionsToFlush.isEmpty {
                let clients = sessionsToFlush
                sessionsToFlush.removeAll(keepingCapacity: true)
                for session in clients { session.flush() }
            }
        }
    }

    /// A write to `node` failed (timeout, lost connection): it may have missed
    /// it, so it is marked down and flushed before serving again. A node
    /// already down needs nothing more.
    func missedWrite(on node: BackendNode, failure: BackendFailure) {
        if failure != .nodeDown && node.markDownAfterMissedWrite() { nodeMarkedDown(node) }
    }

    /// This worker saw the node fail past its limit.
    func nodeMarkedDown(_ node: BackendNode) {
        onNodeDown(node)
        dropConnections(to: node)
    }

    /// A node closed one of this worker's connections (it may have restarted).
    func nodeConnectionLost(_ node: BackendNode) {
        onConnectionLost(node)
    }

    /// Closes this worker's connections to a node that went down; their requests
    /// in flight fail over to replicas. Loop thread.
    func dropConnections(to node: BackendNode) {
        stampEvent()
        pools[ObjectIdentifier(node)]?.failAll(.nodeDown)
        flushGathered()
    }

    /// Installs a new topology (a reload). Connections to nodes that left are
    /// closed once their requests are answered. Loop thread.
    func install(_ newTopology: Topology) {
        topology = newTopology
        let keep = Set(newTopology.nodes.map { ObjectIdentifier($0) })
        for (key, pool) in pools where !keep.contains(key) {
            pool.retire()
            pools[key] = nil
        }
    }

    func checkDeadlines() {
        stampEvent()
        let now = self.now
        let configuration = topology.configuration
        for pool in pools.values {
            pool.checkDeadlines(now: now, requestTimeout: Int64(configuration.requestTimeoutMilliseconds),
                                connectTimeout: Int64(configuration.connectTimeoutMilliseconds))
        }
        confirmDueReplicaChecks(now: now)
        flushGathered()
    }

    /// Reads a key's replicas (again) once a write that may still be on its
    /// way has landed or failed (`ReplicaCheck`).
    func checkAgainLater(_ check: ReplicaCheck) {
        // Bounded: a flood of noreply writes must not grow the proxy without end.
        guard replicaChecks.count < ProxyWorker.replicaChecksWaitingMax else { return counters.add(.replicaCheckSkips) }
        replicaChecks.append((check, now + Int64(topology.configuration.requestTimeoutMilliseconds)))
    }

    static let replicaChecksWaitingMax = 65_536

    private func confirmDueReplicaChecks(now: Int64) {
        guard let first = replicaChecks.first, first.due <= now else { return }
        let due = replicaChecks.prefix { $0.due <= now }
        replicaChecks.removeFirst(due.count)
        for entry in due { entry.check.readAgain() }
    }

    /// Counters of every node pool, for `stats`.
    func connectionCount(to node: BackendNode) -> Int {
        pools[ObjectIdentifier(node)]?.openCount ?? 0
    }
}
