import EventLoop
import Logging

/// Follows the discovery name: every `refresh_s` it is looked up again, and
/// every node list it gives is handed to `install` (the reload path: a list
/// that differs from the running one starts a membership change, or waits for
/// the one under way). A failed or empty look-up keeps the running list: DNS
/// trouble never empties the ring. Counts look-ups and failures, and logs
/// them. Main loop only.
final class NodeDiscovery {
    /// What installing a list did.
    enum InstallOutcome {
        /// The running list already.
        case unchanged
        /// In force (`proxy_discovery_changes` counts it).
        case installed
        /// Waits for the membership change under way to end.
        case queued
        case refused(String)
    }

    let settings: DiscoverySettings
    private let server: SocketAddress
    private let loop: EventLoop
    private let context: ProxyContext
    private let logger: Logger
    private let install: ([RingNode]) -> InstallOutcome
    private var timer: EventTimer?
    private var round: DiscoveryRound?
    /// The failure last logged and when: a DNS outage is logged when it
    /// starts, when its reason changes, and once a minute while it lasts,
    /// not at every look-up.
    private var loggedFailure: (reason: String, at: Int64)?

    static let failureLogIntervalMilliseconds: Int64 = 60_000

    /// `server` is the address of `settings.server` (resolved by the
    /// configuration). Looks up at once when `lookUpNow`, else after one interval.
    init(settings: DiscoverySettings, server: SocketAddress, loop: EventLoop, context: ProxyContext, logger: Logger,
         lookUpNow: Bool, install: @escaping ([RingNode]) -> InstallOutcome) {
        self.settings = settings
        self.server = server
        self.loop = loop
        self.context = context
        self.logger = logger
        self.install = install
        let timer = EventTimer(loop: loop, milliseconds: settings.refreshSeconds * 1000, repeating: true) { [unowned self] in
            lookUp()
        }
        timer.start()
        self.timer = timer
        if lookUpNow { lookUp() }
    }

    deinit { stop() }

    /// Stops following the name (a reload changed or removed `discovery:`).
    func stop() {
        timer?.stop()
        timer = nil
        round?.cancel()
        round = nil
    }

    /// Starts a look-up unless one is still running (a slow server must not
    /// pile them up).
    private func lookUp() {
        guard round == nil else { return }
        let round = DiscoveryRound(settings: settings, server: server, loop: loop) { [weak self] result in
            self?.finished(result)
        }
        self.round = round
        round.start()
    }

    private func finished(_ result: Result<[RingNode], DiscoveryFailure>) {
        round = nil
        switch result {
        case .failure(let failure):
            failed(failure.reason)
        case .success(let nodes):
            context.discoveryLookups.wrappingAdd(1, ordering: .relaxed)
            if let loggedFailure {
                logger.info("discovery: the name resolves again", metadata: ["name": "\(settings.name)", "was": "\(loggedFailure.reason)"])
                self.loggedFailure = nil
            }
            if case .refused(let reason) = install(nodes) { failed("the new node list was refused: \(reason)") }
        }
    }

    private func failed(_ reason: String) {
        context.discoveryFailures.wrappingAdd(1, ordering: .relaxed)
        let now = monotonicMilliseconds()
        if let loggedFailure, loggedFailure.reason == reason, now - loggedFailure.at < NodeDiscovery.failureLogIntervalMilliseconds { return }
        loggedFailure = (reason, now)
        logger.error("discovery failed; the running node list stays", metadata: [
            "name": "\(settings.name)", "server": "\(server)", "error": "\(reason)",
        ])
    }

    /// The first node list, before the proxy serves: looked up on a loop of
    /// its own on the calling thread, again every `refresh_s` until the name
    /// gives nodes (a proxy with no node cannot serve, and one that started
    /// before its nodes were published should not exit for it).
    static func firstNodes(_ settings: DiscoverySettings, server: HostPort, logger: Logger) throws -> [RingNode] {
        let loop = try EventLoop()
        let address = try SocketAddress(host: server.host, port: server.port)
        var nodes: [RingNode]?
        var round: DiscoveryRound?
        var retry: EventTimer?
        func attempt() {
            round = DiscoveryRound(settings: settings, server: address, loop: loop) { result in
                round = nil
                switch result {
                case .success(let found):
                    nodes = found
                    loop.stop()
                case .failure(let failure):
                    logger.error("discovery: no nodes yet; asking again", metadata: [
                        "name": "\(settings.name)", "server": "\(server)", "error": "\(failure)",
                        "retry_s": "\(settings.refreshSeconds)",
                    ])
                    retry?.start()
                }
            }
            round?.start()
        }
        retry = EventTimer(loop: loop, milliseconds: settings.refreshSeconds * 1000, repeating: false) { attempt() }
        attempt()
        loop.run()
        // Every event goes before its loop.
        round = nil
        retry = nil
        withExtendedLifetime(loop) {}
        guard let nodes else { throw DiscoveryFailure("the first look-up did not finish") }
        return nodes
    }
}
