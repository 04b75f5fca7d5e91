import EventLoop
import Logging

/// Brings down nodes back, safely. Runs on the proxy's main loop.
///
/// A node marked down (by any worker) is probed with `version`, the delay
/// between probes doubling from probe_initial_ms to probe_max_ms. When it
/// answers, it may hold values that changed elsewhere while it was away, so
/// it is flushed before it serves again: after a grace period (so requests it
/// had queued before being cut off are applied first, and wiped by the flush),
/// `flush_all`, and only on `OK` is it up. A node that goes down again within
/// flap_window_s of coming back waits twice as long (up to 5 minutes) the next
/// time, so a flapping node does not keep bouncing clients between replicas.
final class HealthMonitor {
    private let loop: EventLoop
    private let logger: Logger
    private var configuration: ProxyConfiguration
    private var tracked: [ObjectIdentifier: Tracking] = [:]
    /// Told when a node is up again (workers open new connections lazily).
    private let onNodeUp: (BackendNode) -> Void
    private let dialer: NodeDialer

    private final class Tracking {
        let node: BackendNode
        var probeDelay: Int
        var timer: EventTimer?
        var exchange: LineExchange?
        /// Milliseconds a recovered node waits, answering probes, before its flush.
        var holdMilliseconds: Int
        var cameUpAt: Int64 = 0
        /// Flushed because it joined the ring, not because it came back: the
        /// membership change warms it, not a refill.
        var joining = false
        init(node: BackendNode, probeDelay: Int, hold: Int) {
            self.node = node
            self.probeDelay = probeDelay
            self.holdMilliseconds = hold
        }
    }

    /// The wait before a recovered node's flush, when it is not flapping.
    static let baseHoldMilliseconds = 1000
    static let maxHoldMilliseconds = 300_000

    init(loop: EventLoop, configuration: ProxyConfiguration, logger: Logger, dialer: NodeDialer = .plain,
         onNodeUp: @escaping (BackendNode) -> Void) {
        self.loop = loop
        self.dialer = dialer
        self.configuration = configuration
        self.logger = logger
        self.onNodeUp = onNodeUp
    }

    func update(configuration: ProxyConfiguration) { self.configuration = configuration }

    /// A worker marked `node` down. Main loop.
    func nodeWentDown(_ node: BackendNode, now: Int64) {
        let tracking = tracked[ObjectIdentifier(node)] ?? Tracking(node: node, probeDelay: configuration.probeInitialMilliseconds,
                                                                   hold: HealthMonitor.baseHoldMilliseconds)
        tracked[ObjectIdentifier(node)] = tracking
        if tracking.cameUpAt > 0 && now - tracking.cameUpAt < Int64(configuration.flapWindowSeconds) * 1000 {
            tracking.holdMilliseconds = min(tracking.holdMilliseconds * 2, HealthMonitor.maxHoldMilliseconds)
            logger.warning("node is flapping; it will wait longer before serving again",
                           metadata: ["node": "\(node)", "hold_ms": "\(tracking.holdMilliseconds)"])
        } else {
            tracking.holdMilliseconds = HealthMonitor.baseHoldMilliseconds
        }
        tracking.probeDelay = configuration.probeInitialMilliseconds
        logger.warning("node marked down", metadata: ["node": "\(node)"])
        scheduleProbe(tracking, after: tracking.probeDelay)
    }

    /// A node joins the ring: it is flushed before it serves, as a node that
    /// comes back is (a node already down is flushed when it answers again).
    func flushBeforeServing(_ node: BackendNode) {
        guard node.transition(from: .up, to: .recovering) else { return }
        let tracking = tracked[ObjectIdentifier(node)] ?? Tracking(node: node, probeDelay: configuration.probeInitialMilliseconds,
                                                                   hold: HealthMonitor.baseHoldMilliseconds)
        tracked[ObjectIdentifier(node)] = tracking
        tracking.joining = true
        logger.info("node joins the membership; flushing it before it serves", metadata: ["node": "\(node)"])
        flush(tracking)
    }

    /// Stops watching nodes that left the configuration.
    func forget(except nodes: [BackendNode]) {
        let keep = Set(nodes.map { ObjectIdentifier($0) })
        for (key, tracking) in tracked where !keep.contains(key) {
            tracking.timer?.stop()
            tracked[key] = nil
        }
    }

    private func scheduleProbe(_ tracking: Tracking, after milliseconds: Int) {
        schedule(tracking, after: milliseconds) { monitor, tracking in monitor.probe(tracking) }
    }

    /// Runs the node's next step after a delay (one timer per node, replaced each time).
    private func schedule(_ tracking: Tracking, after milliseconds: Int, _ step: @escaping (HealthMonitor, Tracking) -> Void) {
        tracking.timer?.stop()
        let timer = EventTimer(loop: loop, milliseconds: milliseconds, repeating: false) { [unowned self, unowned tracking] in
            step(self, tracking)
        }
        timer.start()
        tracking.timer = timer
    }

    private func probe(_ tracking: Tracking) {
        let node = tracking.node
        guard tracked[ObjectIdentifier(node)] === tracking, node.health == .down else { return }
        tracking.exchange = LineExchange.run("version\r\n", to: node.address, loop: loop,
                                             timeoutMilliseconds: configuration.requestTimeoutMilliseconds,
                                             dialer: dialer) { [unowned self, unowned tracking] outcome in
            tracking.exchange = nil
            if case .replied(.version, _) = outcome, node.transition(from: .down, to: .recovering) {
                logger.info("node answers again; flushing it before it serves", metadata: ["node": "\(node)", "hold_ms": "\(tracking.holdMilliseconds)"])
                scheduleFlush(tracking)
            } else {
                tracking.probeDelay = min(tracking.probeDelay * 2, configuration.probeMaxMilliseconds)
                scheduleProbe(tracking, after: tracking.probeDelay)
            }
        }
    }

    private func scheduleFlush(_ tracking: Tracking) {
        schedule(tracking, after: tracking.holdMilliseconds) { monitor, tracking in monitor.flush(tracking) }
    }

    private func flush(_ tracking: Tracking) {
        let node = tracking.node
        guard tracked[ObjectIdentifier(node)] === tracking, node.health == .recovering else { return }
        tracking.exchange = LineExchange.run("flush_all\r\n", to: node.address, loop: loop,
                                             timeoutMilliseconds: configuration.requestTimeoutMilliseconds,
                                             dialer: dialer) { [unowned self, unowned tracking] outcome in
            tracking.exchange = nil
            if case .replied(.ok, _) = outcome, node.transition(from: .recovering, to: .up) {
                tracking.cameUpAt = monotonicMilliseconds()
                tracking.probeDelay = configuration.probeInitialMilliseconds
                logger.info("node flushed and serving", metadata: ["node": "\(node)"])
                if !tracking.joining { onNodeUp(node) }
                tracking.joining = false
            } else {
                node.transition(from: .recovering, to: .down)
                tracking.probeDelay = min(tracking.probeDelay * 2, configuration.probeMaxMilliseconds)
                scheduleProbe(tracking, after: tracking.probeDelay)
            }
        }
    }
}
