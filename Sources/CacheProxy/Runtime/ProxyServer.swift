import Concurrency
import EventLoop
import Glibc
import Logging

/// The running proxy.
///
///   main thread: Listener --accept--> round robin --> ProxyWorker 1..n (own loop each)
///                HealthMonitor (probe, flush, re-admit down nodes)
///                SIGHUP / POST /reload --> new Topology --> every worker
///                NodeDiscovery (discovery:): a changed DNS answer --> new Topology, the same way
///                MetricsEndpoint (/metrics, /reload), optional
// @unchecked: its state lives on the main loop; workers reach it only through
// `mainLoop.execute`.
public final class ProxyServer: @unchecked Sendable {
    private let mainLoop: EventLoop
    private let context: ProxyContext
    private var workers: [ProxyWorker] = []
    private var listener: Listener?
    private var monitor: HealthMonitor!
    private var metrics: MetricsEndpoint?
    private var statsPoller: NodeStatsPoller?
    private var signalWatchers: [SignalWatcher] = []
    private var nextWorker = 0
    private var shuttingDown = false
    private var shutdownCheck: EventTimer?
    /// A membership change waiting for the one under way to end.
    private var pendingReload: EventTimer?
    /// Fires when the membership change under way ends (`retireFinishedTransition`).
    private var retirement: EventTimer?
    /// Moves keys after a membership change (created with the main loop's work in `run`).
    private var rebalancer: Rebalancer?
    /// Fires when the change under way enters its warming phase: the rebalance's copy pass.
    private var rebalanceStart: EventTimer?
    /// Nodes by identity, kept across reloads so their health carries over.
    private var registry: [String: BackendNode] = [:]
    private let loadConfiguration: (() throws -> ProxyConfiguration)?
    /// The configuration the proxy started with: what its sockets, threads and
    /// per-node connections still follow whatever a reload says.
    private let startConfiguration: ProxyConfiguration
    /// The file `loadConfiguration` reads, followed when `watch_config` is on.
    private let configurationPath: String?
    private var configurationWatch: ConfigurationWatch?
    /// Follows `discovery:` when the configuration has it.
    private var discovery: NodeDiscovery?
    /// The node list the discovery name gave last, for the settings
    /// `discovery` follows: what a reload, or a change queued behind the one
    /// under way, puts in force.
    private var discoveredNodes: [RingNode]?
    /// Whether the queued change re-reads the file (a reload was queued), or
    /// only installs the latest discovered list.
    private var pendingReadsFile = false
    /// The generation the queued change was logged with: a look-up that
    /// finds the same list again while it waits is not logged again.
    private var pendingGeneration: String?
    private let logger: Logger
    public private(set) var boundPort: UInt16 = 0

    /// `loadConfiguration`, when given, is called again on every reload (it
    /// re-reads the file and applies the command-line overrides). With
    /// `discovery`, the first node list is looked up here, and looked up again
    /// until the name gives one: nothing listens before there are nodes.
    public init(configuration: ProxyConfiguration, loadConfiguration: (() throws -> ProxyConfiguration)? = nil,
                configurationPath: String? = nil, logger: Logger = Logger(label: "memcluster-proxy")) throws {
        var configuration = configuration
        if let settings = configuration.discovery, configuration.nodes.isEmpty {
            configuration.nodes = try NodeDiscovery.firstNodes(settings, server: try settings.resolvedServer(), logger: logger)
            logger.info("discovery: the first node list", metadata: [
                "name": "\(settings.name)", "nodes": "\(configuration.nodes.map { HostPort(host: $0.host, port: $0.port).description })",
            ])
        }
        self.mainLoop = try EventLoop()
        self.loadConfiguration = loadConfiguration
        self.configurationPath = configurationPath
        self.startConfiguration = configuration
        self.logger = logger
        var registry: [String: BackendNode] = [:]
        let topology = try ProxyServer.topology(for: configuration, workers: configuration.threads, registry: &registry,
                                                previous: nil, now: monotonicMilliseconds())
        self.registry = registry
        do {
            let clientTLS = try configuration.clientTLS.map { settings throws(TLSError) in try TLSServerContext(settings: settings) }
            let nodeTLS = try configuration.nodeTLS.map { settings throws(TLSError) in try TLSClientContext(settings: settings) }
            let login = configuration.nodeAuth.map { credentials in
                NodeLogin(user: credentials.user, password: credentials.password, onRefusal: ProxyServer.onceASecond(logger))
            }
            self.context = ProxyContext(workers: configuration.threads, topology: topology, startedAt: Int64(time(nil)),
                                        nodeDialer: NodeDialer(tls: nodeTLS, login: login), clientTLS: clientTLS,
                                        plainTextTLSClient: ProxyServer.onceASecond(logger))
        } catch {
            throw ConfigurationError("\(configuration.clientTLS != nil ? "tls/node_tls" : "node_tls"): \(error)")
        }
        if configuration.discovery != nil { discoveredNodes = configuration.nodes }
    }

    /// The topology for `configuration`, reusing the registry's nodes (by
    /// address, so a node keeps its health and its connections); new nodes
    /// keep latency for `workers` threads. When the placement differs from
    /// `previous`, a transition from it starts at `now` (docs/membership.md);
    /// when it does not, the transition under way, if any, goes on.
    private static func topology(for configuration: ProxyConfiguration, workers: Int, registry: inout [String: BackendNode],
                                 previous: Topology?, now: Int64) throws -> Topology {
        var nodes: [BackendNode] = []
        for ringNode in configuration.nodes {
            let identity = HostPort(host: ringNode.host, port: ringNode.port).description
            let node = try registry[identity] ?? BackendNode(ringNode: ringNode, workers: workers)
            registry[identity] = node
            nodes.append(node)
        }
        var topology = try Topology(configuration: configuration, nodes: nodes)
        if let previous {
            if topology.generation == previous.generation {
                // The change under way goes on; once over, it is dropped, and its
                // old placement joins the shadows.
                if let transition = previous.transition, transition.phase(at: now) == .finished {
                    topology = try Topology(configuration: configuration, nodes: nodes,
                                            shadows: Array(([transition.earlier] + previous.shadows).prefix(2)))
                } else {
                    topology = try Topology(configuration: configuration, nodes: nodes, transition: previous.transition,
                                            shadows: previous.shadows)
                }
            } else {
                // The membership before the previous one keeps being invalidated
                // on writes (its copies may linger); two are kept.
                let shadows = Array(((previous.transition.map { [$0.earlier] } ?? []) + previous.shadows).prefix(2))
                let transition = Transition(earlier: previous.asEarlier, learnedAt: now,
                                            settleMilliseconds: Int64(configuration.membershipSettleMilliseconds),
                                            warmupMilliseconds: Int64(configuration.warmupSeconds) * 1000)
                topology = try Topology(configuration: configuration, nodes: nodes, transition: transition, shadows: shadows)
            }
        }
        // Nodes no membership in play names any more are forgotten.
        registry = Dictionary(topology.nodes.map { ($0.identity, $0) }, uniquingKeysWith: { first, _ in first })
        return topology
    }

    /// Two entries that reach the same address (`localhost:11211` and
    /// `127.0.0.1:11211`) would put both replicas of a key on one process.
    static func refuseDuplicateAddresses(_ nodes: [RingNode]) throws(ConfigurationError) {
        var owner: [String: Int] = [:]
        for (index, node) in nodes.enumerated() {
            for form in SocketAddress.resolvedForms(host: node.host, port: node.port) {
                if let first = owner[form] {
                    let a = HostPort(host: nodes[first].host, port: nodes[first].port)
                    let b = HostPort(host: node.host, port: node.port)
                    throw ConfigurationError("nodes[\(index)] (\(b)) and nodes[\(first)] (\(a)) are the same node: both reach \(form)")
                }
                owner[form] = index
            }
        }
    }

    /// Binds the client port (and the metrics port).
    public func bind() throws {
        let configuration = context.topology.configuration
        let address = try SocketAddress(host: configuration.listen.host, port: configuration.listen.port)
        let fd = try Socket.listen(on: address, backlog: 1024)
        try? Socket.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
        boundPort = Socket.localPort(fd) ?? configuration.listen.port
        listener = Listener(fd: fd, loop: mainLoop) { [unowned self] client in accept(client) }
        if let metricsAddress = configuration.metricsListen {
            metrics = try MetricsEndpoint(address: metricsAddress, loop: mainLoop, context: context,
                                          notReadyReason: { [unowned self] in notReadyReason() },
                                          rebalance: { [unowned self] in rebalanceOnDemand() }) { [unowned self] in
                reload()
            }
            warnIfAdminEndpointIsOpen(configuration)
        }
    }

    /// Descriptors the proxy may need at once with `configuration`: every
    /// client, one more to accept and refuse the next, each worker's
    /// connections to each node in both lanes, a probe and a stats poll per
    /// node, the admin endpoint's connections, and its own loops and listeners.
    static func descriptorsNeeded(_ configuration: ProxyConfiguration) -> Int {
        let nodes = configuration.nodes.count
        return configuration.maxConnections + 1 + nodes * configuration.threads * configuration.backendConnections * 2
            + nodes * 2 + 64 + 8 * configuration.threads + 32
    }

    /// Beyond loopback, an admin endpoint without a token lets anyone who
    /// reaches the port reload the configuration.
    private func warnIfAdminEndpointIsOpen(_ configuration: ProxyConfiguration) {
        guard let address = metrics?.access.address, !address.isLoopback, configuration.adminToken == nil else { return }
        logger.warning("the admin endpoint (POST /reload) is reachable beyond this machine without a token; set admin_token_file",
                       metadata: ["metrics_listen": "\(address)"])
    }

    /// Proxies following one name learn a change up to `refresh_s` apart (each
    /// asks on its own timer), plus a caching resolver's TTL: a settle period
    /// shorter than that does not cover them (docs/membership.md).
    private func warnIfSettleIsShort(_ configuration: ProxyConfiguration) {
        guard let discovery = configuration.discovery,
              configuration.membershipSettleMilliseconds <= discovery.refreshSeconds * 1000 else { return }
        logger.warning("membership_settle_ms is not above discovery.refresh_s: proxies asking at different moments may learn a change further apart than that, and serve stale values meanwhile", metadata: [
            "membership_settle_ms": "\(configuration.membershipSettleMilliseconds)", "refresh_s": "\(discovery.refreshSeconds)",
        ])
    }

    /// Starts the workers and runs until SIGINT or SIGTERM.
    public func run() throws {
        SignalWatcher.ignoreBrokenPipes()
        let configuration = context.topology.configuration
        if let problem = DescriptorLimit.ensure(ProxyServer.descriptorsNeeded(configuration)) {
            throw ConfigurationError("max_connections \(configuration.maxConnections): \(problem)")
        }
        let mainLoop = self.mainLoop
        rebalancer = Rebalancer(loop: mainLoop, context: context, logger: logger)
        monitor = HealthMonitor(loop: mainLoop, configuration: configuration, logger: logger,
                                dialer: context.nodeDialer) { [context, unowned self] node in
            node.startRefill(until: monotonicMilliseconds() + Int64(context.topology.configuration.warmupSeconds) * 1000)
            rebalancer?.refill(node, context.topology)
        }
        for index in 0..<configuration.threads {
            let loop = try EventLoopThread.start(name: "proxy-worker-\(index)")
            let worker = ProxyWorker(loop: loop, index: index, context: context, links: NodeLinks(dialer: context.nodeDialer),
                                     onNodeDown: { [unowned self] node in
                mainLoop.execute { [self] in nodeWentDown(node) }
            }, onConnectionLost: { [unowned self] node in
                mainLoop.execute { [self] in connectionLost(to: node) }
            })
            workers.append(worker)
            loop.execute { worker.start() }
        }
        let poller = NodeStatsPoller(loop: mainLoop, context: context) { [unowned self] node in nodeRestarted(node) }
        context.reportNodeStats(totals: { poller.totals() }, perNode: { poller.stats(of: $0) })
        statsPoller = poller
        signalWatchers.append(SignalWatcher(loop: mainLoop, signal: SIGINT) { [unowned self] in shutDownGracefully() })
        signalWatchers.append(SignalWatcher(loop: mainLoop, signal: SIGTERM) { [unowned self] in shutDownGracefully() })
        signalWatchers.append(SignalWatcher(loop: mainLoop, signal: SIGHUP) { [unowned self] in reload() })
        follow(configuration.discovery, lookUpNow: false)
        if let configurationPath, configuration.watchConfiguration {
            configurationWatch = ConfigurationWatch(path: configurationPath, loop: mainLoop) { [unowned self] in
                logger.info("configuration file changed; reloading", metadata: ["path": "\(configurationPath)"])
                reload()
            }
        }
        warnIfSettleIsShort(configuration)
        logger.info("proxy listening", metadata: [
            "listen": "\(configuration.listen.host):\(boundPort)", "nodes": "\(configuration.nodes.count)",
            "replicas": "\(context.topology.replicas)", "threads": "\(configuration.threads)",
        ])
        mainLoop.run()
        // Connections still open here did not finish within shutdown_grace_ms.
        let cut = max(0, context.currentConnections.load(ordering: .relaxed))
        for worker in workers {
            worker.loop.execute { worker.closeAll() }
            worker.loop.stop()
        }
        for worker in workers { worker.loop.waitUntilStopped() }
        logger.info("proxy stopped", metadata: [
            "uptime_s": "\(Int64(time(nil)) - context.startedAt)", "connections_cut": "\(cut)",
            "connections_served": "\(context.total(.totalConnections))",
        ])
    }

    public func stop() { mainLoop.stop() }

    /// SIGTERM, SIGINT: stop accepting, let every client get the replies to
    /// what it sent before, end each connection cleanly, and stop once all are
    /// closed or `shutdown_grace_ms` is over. A second signal stops at once.
    /// Main loop.
    private func shutDownGracefully() {
        if shuttingDown { return stop() }
        shuttingDown = true
        logger.info("shutting down: answering what clients sent, then exiting")
        listener = nil
        for worker in workers { worker.loop.execute { worker.drainSessions() } }
        let deadline = monotonicMilliseconds() + Int64(context.topology.configuration.shutdownGraceMilliseconds)
        let context = self.context
        let check = EventTimer(loop: mainLoop, milliseconds: 20, repeating: true) { [unowned self] in
            if context.currentConnections.load(ordering: .relaxed) <= 0 || monotonicMilliseconds() >= deadline { stop() }
        }
        check.start()
        shutdownCheck = check
    }

    /// Why a load balancer should not send clients here now (`GET /ready`), or nil.
    private func notReadyReason() -> String? {
        if shuttingDown { return "shutting down" }
        let nodes = context.topology.nodes
        if nodes.isEmpty { return "no nodes in the membership" }
        if !nodes.contains(where: \.isUp) { return "no node is up (\(nodes.count) down)" }
        return nil
    }

    private func accept(_ fd: Int32) {
        if context.currentConnections.load(ordering: .relaxed) >= context.topology.configuration.maxConnections {
            Socket.refuse(fd)
            context.rejectedConnections.wrappingAdd(1, ordering: .relaxed)
            return
        }
        context.currentConnections.wrappingAdd(1, ordering: .relaxed)
        let worker = workers[nextWorker]
        nextWorker = (nextWorker + 1) % workers.count
        worker.adopt(fd)
    }

    /// A worker marked a node down: probe it, and have every worker drop its
    /// connections to it so requests in flight fail over now. Main loop.
    private func nodeWentDown(_ node: BackendNode) {
        monitor.nodeWentDown(node, now: monotonicMilliseconds())
        for worker in workers {
            worker.loop.execute { worker.dropConnections(to: node) }
        }
    }

    /// A node closed a worker's connection: until it is known whether the same
    /// process still answers there, a miss on it is looked up on a replica.
    /// Main loop.
    private func connectionLost(to node: BackendNode) {
        node.startRefill(until: monotonicMilliseconds() + ProxyServer.provisionalRefillMilliseconds)
        statsPoller?.connectionLost(to: node)
    }

    /// How long a node whose connection was lost is treated as possibly empty
    /// while the proxy asks it who it is.
    static let provisionalRefillMilliseconds: Int64 = 10_000

    /// Another process answers at a node's address: the node restarted since
    /// the proxy last looked and holds nothing; its keys are refilled from
    /// their replicas on first read, as after a recovery. Main loop.
    private func nodeRestarted(_ node: BackendNode) {
        let window = Int64(context.topology.configuration.warmupSeconds) * 1000
        logger.warning("node restarted; its keys are refilled from their replicas on first read",
                       metadata: ["node": "\(node)", "refill_s": "\(window / 1000)"])
        node.startRefill(until: monotonicMilliseconds() + window)
    }

    /// A warning at most once a second (a node refusing every link is said,
    /// not repeated per link).
    static func onceASecond(_ logger: Logger) -> @Sendable (String) -> Void {
        let throttle = ThrottledLog { line in logger.warning("\(line)") }
        return { line in throttle.log(line) }
    }

    /// A reload reads the TLS files again (renewed certificates take effect
    /// for new connections); a file that does not load keeps the running one.
    private func reloadCertificates() {
        do {
            try context.clientTLS?.reload()
            try context.nodeDialer.tls?.reload()
        } catch {
            logger.warning("TLS certificates not reloaded; the running ones stay", metadata: ["error": "\(error)"])
        }
    }

    /// `POST /rebalance`: a repair pass over every member's keys. Main loop.
    private func rebalanceOnDemand() -> Result<String, Rebalancer.RepairRefusal> {
        guard let rebalancer else { return .failure(.disabled) }
        return rebalancer.repairAll(context.topology).map { "rebalance started: repairing, listing \($0) nodes" }
    }

    /// Re-reads the configuration and installs it without dropping a client
    /// connection; a bad file keeps the running configuration. With
    /// `discovery:`, the nodes are the list the name gave last (the running
    /// list while a changed name is not looked up yet). Main loop.
    @discardableResult
    func reload() -> ReloadOutcome {
        guard let loadConfiguration else {
            return .refused("no configuration file to reload")
        }
        do {
            var configuration = try loadConfiguration()
            if let settings = configuration.discovery {
                let followed = settings == discovery?.settings ? discoveredNodes : nil
                configuration.nodes = followed ?? context.topology.configuration.nodes
            }
            reloadCertificates()
            let deferred = ProxyServer.restartOnlyChanges(from: startConfiguration, to: configuration)
            if !deferred.isEmpty {
                logger.warning("some settings take effect only at restart", metadata: ["settings": "\(deferred.joined(separator: ", "))"])
            }
            let outcome = try change(to: configuration, readingFile: true)
            if let credentials = configuration.nodeAuth {
                context.nodeDialer.login?.update(user: credentials.user, password: credentials.password)
            }
            // A changed name is looked up at once; a removed one is no longer asked.
            follow(configuration.discovery, lookUpNow: true)
            switch outcome {
            case .queued(let wait):
                return .queued(untilMilliseconds: wait, deferred: deferred)
            case .applied(let topology, let now):
                context.reloads.wrappingAdd(1, ordering: .relaxed)
                warnIfAdminEndpointIsOpen(configuration)
                warnIfSettleIsShort(configuration)
                logger.info("configuration reloaded", metadata: [
                    "nodes": "\(configuration.nodes.count)", "generation": "\(topology.generation)",
                    "transition": "\(ProxyServer.describe(topology.transition, at: now))",
                ])
                return .applied(deferred: deferred)
            }
        } catch {
            context.reloadFailures.wrappingAdd(1, ordering: .relaxed)
            logger.error("reload refused; the running configuration stays", metadata: ["error": "\(error)"])
            return .refused("\(error)")
        }
    }

    /// What `change(to:readingFile:)` did.
    private enum ChangeOutcome {
        /// In force from `now` (monotonic ms).
        case applied(Topology, now: Int64)
        /// Waits for the membership change under way, which ends in this many ms.
        case queued(Int64)
    }

    /// Puts `configuration` in force: the one path of a file reload and of a
    /// changed DNS answer. A new membership starts a transition (Topology's
    /// phases), and nodes that join the ring are flushed before they serve;
    /// while another change is under way it is queued until that one ends
    /// (`readingFile`: the file is read again then; else the list the name
    /// gave last is installed). Throws when the configuration cannot be
    /// installed. Main loop.
    private func change(to configuration: ProxyConfiguration, readingFile: Bool) throws -> ChangeOutcome {
        let current = context.topology
        // More nodes need more connections: make room, or refuse the change.
        if let problem = DescriptorLimit.ensure(ProxyServer.descriptorsNeeded(configuration)) {
            throw ConfigurationError(problem)
        }
        let now = monotonicMilliseconds()
        var registry = self.registry
        let topology = try ProxyServer.topology(for: configuration, workers: startConfiguration.threads,
                                                registry: &registry, previous: current, now: now)
        // One membership change at a time: another one waits until the one
        // under way is over, which is as far apart as proxies learned them.
        if topology.generation != current.generation, let transition = current.transition,
           transition.phase(at: now) != .finished {
            let wait = transition.endsAt - now
            let alreadyQueued = pendingReload != nil && pendingGeneration == topology.generation
            scheduleReload(at: transition.endsAt, readingFile: readingFile)
            if readingFile || !alreadyQueued {
                logger.info("membership change queued until the one under way ends", metadata: [
                    "generation": "\(topology.generation)", "in_ms": "\(wait)",
                    "origin": "\(readingFile ? "configuration" : "discovery")",
                ])
            }
            pendingGeneration = topology.generation
            return .queued(wait)
        }
        self.registry = registry
        monitor.update(configuration: configuration)
        ProxyLogging.set(configuration.logLevel)
        flushJoiningNodes(of: topology, previous: current)
        install(topology)
        return .applied(topology, now: now)
    }

    /// The transition of a snapshot at `now`, for the log.
    private static func describe(_ transition: Transition?, at now: Int64) -> String {
        transition.map { "\($0.phase(at: now).rawValue), ends in \($0.endsAt - now) ms" } ?? "none"
    }

    /// Starts, restarts or stops following the discovery name as the
    /// configuration says; unchanged settings leave the running look-ups be.
    /// Main loop.
    private func follow(_ settings: DiscoverySettings?, lookUpNow: Bool) {
        guard discovery?.settings != settings else { return }
        if let running = discovery {
            // The list a name no longer followed gave is not the new name's.
            running.stop()
            discovery = nil
            discoveredNodes = nil
        }
        guard let settings else {
            discoveredNodes = nil
            return
        }
        do {
            let server = try settings.resolvedServer()
            let address = try SocketAddress(host: server.host, port: server.port)
            discovery = NodeDiscovery(settings: settings, server: address, loop: mainLoop, context: context, logger: logger,
                                      lookUpNow: lookUpNow) { [unowned self] nodes in installDiscovered(nodes) }
        } catch {
            context.discoveryFailures.wrappingAdd(1, ordering: .relaxed)
            logger.error("discovery cannot start; the running node list stays", metadata: ["error": "\(error)"])
        }
    }

    /// A look-up gave `nodes`: when they differ from the running list, the
    /// running configuration with them goes the way of a reload (a
    /// transition; queued behind a change under way, or behind a queued
    /// reload, which takes the list too). Main loop.
    private func installDiscovered(_ nodes: [RingNode]) -> NodeDiscovery.InstallOutcome {
        discoveredNodes = nodes
        let current = context.topology
        guard nodes != current.configuration.nodes else { return .unchanged }
        if pendingReload != nil && pendingReadsFile { return .queued }
        var configuration = current.configuration
        configuration.nodes = nodes
        do {
            switch try change(to: configuration, readingFile: false) {
            case .queued:
                return .queued
            case .applied(let topology, let now):
                context.discoveryChanges.wrappingAdd(1, ordering: .relaxed)
                let before = Set(current.nodes[0..<current.ring.nodes.count].map(\.identity))
                let after = Set(topology.nodes[0..<topology.ring.nodes.count].map(\.identity))
                logger.info("discovery: the node list changed", metadata: [
                    "added": "\(after.subtracting(before).sorted())", "removed": "\(before.subtracting(after).sorted())",
                    "nodes": "\(nodes.count)", "generation": "\(topology.generation)",
                    "transition": "\(ProxyServer.describe(topology.transition, at: now))",
                ])
                return .installed
            }
        } catch {
            return .refused("\(error)")
        }
    }

    /// Hands `topology` to the context and every worker; nodes it no longer
    /// names stop being watched, and workers close their connections to them.
    private func install(_ topology: Topology) {
        let interrupted = rebalancer?.cancel()
        rebalanceStart?.stop()
        rebalanceStart = nil
        context.install(topology)
        if let interrupted { rebalancer?.resume(interrupted, on: topology) }
        monitor.forget(except: topology.nodes)
        for worker in workers { worker.loop.execute { worker.install(topology) } }
        if let transition = topology.transition {
            scheduleRetirement(at: transition.endsAt)
            rebalanceStart = startTimer(at: transition.learnedAt + transition.settleMilliseconds) { server in
                server.rebalanceStart = nil
                server.rebalancer?.copyMovedKeys(topology)
            }
        }
    }

    /// A node that joins the ring may hold copies from an earlier time in the
    /// tier, which no write has reached since: it is flushed before it serves,
    /// and until then its keys are routed as in the guarded phase
    /// (`Topology.route`). Main loop.
    private func flushJoiningNodes(of topology: Topology, previous: Topology) {
        guard topology.generation != previous.generation else { return }
        let before = Set(previous.nodes[0..<previous.ring.nodes.count].map { ObjectIdentifier($0) })
        for node in topology.nodes[0..<topology.ring.nodes.count] where !before.contains(ObjectIdentifier(node)) {
            monitor.flushBeforeServing(node)
        }
    }

    /// When the change under way ends, the snapshot without it is installed:
    /// the nodes that left are let go.
    private func scheduleRetirement(at deadline: Int64) {
        retirement?.stop()
        retirement = startTimer(at: deadline) { server in
            server.retirement = nil
            server.retireFinishedTransition()
        }
    }

    /// A one-shot timer on the main loop firing at `deadline` (monotonic ms).
    private func startTimer(at deadline: Int64, _ fire: @escaping (ProxyServer) -> Void) -> EventTimer {
        let delay = max(1, deadline - monotonicMilliseconds())
        let timer = EventTimer(loop: mainLoop, milliseconds: Int(delay), repeating: false) { [unowned self] in fire(self) }
        timer.start()
        return timer
    }

    private func retireFinishedTransition() {
        let current = context.topology
        guard let transition = current.transition else { return }
        let now = monotonicMilliseconds()
        guard transition.phase(at: now) == .finished else { return scheduleRetirement(at: transition.endsAt) }
        var registry = self.registry
        guard let topology = try? ProxyServer.topology(for: current.configuration, workers: startConfiguration.threads,
                                                       registry: &registry, previous: current, now: now) else { return }
        self.registry = registry
        install(topology)
        logger.info("membership change over", metadata: ["generation": "\(topology.generation)"])
        rebalancer?.cleanOrphans(topology)
    }

    /// Changes again at `deadline` (monotonic ms), once: a queued membership
    /// change is read from the file as it is then (a queued reload), or is
    /// the list the discovery name gave last.
    private func scheduleReload(at deadline: Int64, readingFile: Bool) {
        pendingReload?.stop()
        pendingReadsFile = pendingReadsFile || readingFile
        pendingReload = startTimer(at: deadline) { server in
            let readsFile = server.pendingReadsFile
            server.pendingReload = nil
            server.pendingReadsFile = false
            server.pendingGeneration = nil
            if readsFile {
                server.reload()
            } else if let nodes = server.discoveredNodes {
                _ = server.installDiscovered(nodes)
            }
        }
    }

    /// Settings a running proxy cannot change (its sockets, its threads and
    /// the connections each worker keeps to a node) that differ from those it
    /// started with.
    static func restartOnlyChanges(from old: ProxyConfiguration, to new: ProxyConfiguration) -> [String] {
        var changed: [String] = []
        if old.listen != new.listen { changed.append("listen") }
        if old.threads != new.threads { changed.append("threads") }
        if old.metricsListen != new.metricsListen { changed.append("metrics_listen") }
        if old.backendConnections != new.backendConnections { changed.append("backend_connections") }
        if old.clientTLS != new.clientTLS { changed.append("tls") }
        if old.nodeTLS != new.nodeTLS { changed.append("node_tls") }
        // New credentials apply to the links opened after the reload; turning
        // the login on or off needs every link opened again.
        if (old.nodeAuth == nil) != (new.nodeAuth == nil) { changed.append("node_auth") }
        return changed
    }
}

/// What a reload did, as `POST /reload` answers it and the log says it.
enum ReloadOutcome: Equatable, CustomStringConvertible {
    /// The new configuration serves, except the settings in `deferred`, which
    /// only a restart applies.
    case applied(deferred: [String])
    /// The configuration was refused; the running one stays.
    case refused(String)
    /// A new membership waits for the change under way, which ends in this many ms.
    case queued(untilMilliseconds: Int64, deferred: [String])

    var description: String {
        switch self {
        case .applied(let deferred) where deferred.isEmpty: return "OK"
        case .applied(let deferred):
            return "OK, except \(deferred.joined(separator: ", ")): they take effect only at restart"
        case .refused(let reason): return "reload refused: \(reason)"
        case .queued(let wait, let deferred):
            let restart = deferred.isEmpty ? "" : "; \(deferred.joined(separator: ", ")) take effect only at restart"
            return "OK, queued: the membership change under way ends in \((wait + 999) / 1000) s and this one starts then\(restart)"
        }
    }
}
