import EventLoop
import Synchronization

/// One cache node as every worker sees it: where it is and whether it may be
/// used. Thread-safe; shared by all workers and kept across reloads for as long
/// as the node stays in the configuration, so its health survives a reload.
///
///   up --failure_limit consecutive failures--> down --probe answers--> recovering
///    ^                                                                   | flush_all
///    '----------------------------------- flushed, stayed healthy -------'
public final class BackendNode: Sendable, CustomStringConvertible {
    public enum Health: UInt8, Sendable {
        /// Serving.
        case up
        /// Skipped by routing; the health monitor probes it.
        case down
        /// Answering probes again; being flushed before it may serve.
        case recovering
    }

    public let ringNode: RingNode
    public let address: SocketAddress
    /// `host:port`, the node's identity across reloads.
    public let identity: String
    private let healthState = Atomic<UInt8>(Health.up.rawValue)
    private let consecutiveFailures = Atomic<Int>(0)
    /// Changes whenever the node goes down, so workers drop connections made before.
    private let epochCounter = Atomic<Int>(0)

    /// Until then (monotonic ms) the node was flushed on recovery: a miss here
    /// is looked up on the key's next replica and copied back.
    private let refillDeadline = Atomic<Int64>(0)

    /// Which process answers at the node's address: its pid and start time
    /// (memcached's `pid` and `time - uptime`), 0 before the first `stats`.
    private let bootIdentity = Atomic<UInt64>(0)

    // Counters for `stats nodes`: every worker adds to them.
    let requests = Atomic<Int>(0)
    let failures = Atomic<Int>(0)
    let timeouts = Atomic<Int>(0)
    let markedDown = Atomic<Int>(0)
    /// Times another process was found answering at the node's address.
    let restarts = Atomic<Int>(0)
    /// Time from queueing a request for the node to reading its reply, a
    /// series per worker (each writes its own).
    let latency: LatencyHistograms

    public init(ringNode: RingNode, workers: Int = 1) throws(SystemCallError) {
        self.ringNode = ringNode
        self.latency = LatencyHistograms(series: workers)
        self.address = try SocketAddress(host: ringNode.host, port: ringNode.port)
        self.identity = HostPort(host: ringNode.host, port: ringNode.port).description
    }

    public var health: Health { Health(rawValue: healthState.load(ordering: .acquiring)) ?? .down }
    /// Routing may send requests here.
    @inline(__always) public var isUp: Bool { healthState.load(ordering: .relaxed) == Health.up.rawValue }
    public var epoch: Int { epochCounter.load(ordering: .acquiring) }
    public var description: String { identity }

    /// Until `deadline`, a miss here is looked up on the key's next replica
    /// (a window already running longer is kept).
    func startRefill(until deadline: Int64) {
        var current = refillDeadline.load(ordering: .relaxed)
        while current < deadline {
            let (exchanged, original) = refillDeadline.compareExchange(expected: current, desired: deadline, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }

    /// The node came back empty (or may have) and its keys are still being
    /// refilled from replicas.
    func isRefilling(now: Int64) -> Bool { refillDeadline.load(ordering: .relaxed) > now }

    /// Records which process answers at the node's address. True when it is
    /// not the one seen before: the node restarted, and whatever it held is gone.
    func observeBoot(pid: UInt32, startedAt: UInt32) -> Bool {
        let identity = UInt64(pid) << 32 | UInt64(startedAt)
        let previous = bootIdentity.exchange(identity, ordering: .relaxed)
        if previous == 0 || previous == identity { return false }
        // `time - uptime` is fixed for a process (memcached reads both from one
        // clock), but two reads of a clock that ticks between them can differ
        // by a second.
        let previousStart = UInt32(truncatingIfNeeded: previous)
        if UInt32(previous >> 32) == pid && max(previousStart, startedAt) - min(previousStart, startedAt) <= 1 {
            return false
        }
        restarts.wrappingAdd(1, ordering: .relaxed)
        return true
    }

    /// A request failed (error, timeout, refused connection). Returns true when
    /// this failure marked the node down.
    @discardableResult
    func recordFailure(limit: Int) -> Bool {
        failures.wrappingAdd(1, ordering: .relaxed)
        let count = consecutiveFailures.wrappingAdd(1, ordering: .relaxed).newValue
        guard count >= limit else { return false }
        return transition(from: .up, to: .down)
    }

    /// A write this node may have missed: it must not serve again before it is
    /// flushed, whatever the failure limit says. Returns true when this marked it down.
    @discardableResult
    func markDownAfterMissedWrite() -> Bool {
        failures.wrappingAdd(1, ordering: .relaxed)
        return transition(from: .up, to: .down)
    }

    /// A reply arrived: the failure streak is over.
    @inline(__always) func recordSuccess() {
        if consecutiveFailures.load(ordering: .relaxed) != 0 { consecutiveFailures.store(0, ordering: .relaxed) }
    }

    /// Moves between health states; false when the node was not in `from`.
    @discardableResult
    func transition(from: Health, to: Health) -> Bool {
        let (exchanged, _) = healthState.compareExchange(expected: from.rawValue, desired: to.rawValue, ordering: .acquiringAndReleasing)
        guard exchanged else { return false }
        if to == .down {
            epochCounter.wrappingAdd(1, ordering: .releasing)
            markedDown.wrappingAdd(1, ordering: .relaxed)
        }
        if to == .up { consecutiveFailures.store(0, ordering: .relaxed) }
        return true
    }
}
