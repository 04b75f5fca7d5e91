import Buffers
import EventLoop
import Glibc
import MemcacheProtocol

/// One persistent connection from a worker to a node. Requests of many clients
/// are pipelined on it; replies come back in the order the requests went out,
/// so each reply unit completes the oldest request in flight.
///
///   send(call, tag, shape) --> output buffer (flushed once per event) --> node
///   node --> input --> ResponseParser --> unit --> inFlight.first.call
///
/// A request unanswered after the timeout, a refused connection or a reply
/// that cannot be framed fails every request in flight and closes the
/// connection; the worker opens a new one on the next send. Loop thread only.
final class BackendConnection: ConnectionHandler {
    let node: BackendNode
    /// The node's epoch when this connection was made; a later epoch means the
    /// node went down since, and this connection must not be used.
    let epoch: Int
    private unowned let worker: ProxyWorker
    private var connection: Connection?
    private var inFlight = RingQueue<InFlight>(capacity: 64)
    private let parser = ResponseParser(maxLineLength: 64 * 1024)
    private var connectStarted: Int64
    /// When the node last sent reply bytes: a node busy sending a large reply
    /// is not slow, so a request's timeout counts from the later of its own
    /// sending and this.
    private var lastProgress: Int64
    private(set) var isClosed = false
    /// Queued in the worker's list of connections to flush at the end of this event.
    var isQueuedForFlush = false

    private struct InFlight {
        let call: ReplyReceiver
        let tag: Int
        let shape: ReplyShape
        let sentAt: Int64
        /// The worker's event stamp when it was queued (ns), for the node's latency.
        let queuedAt: Int64
        /// The `KeyFence` stripe a write holds until it is answered, or -1.
        let fence: Int
    }

    init(node: BackendNode, worker: ProxyWorker) {
        self.node = node
        self.epoch = node.epoch
        self.worker = worker
        self.connectStarted = worker.now
        self.lastProgress = connectStarted
        do {
            connection = try worker.links.connect(node, worker.loop, self)
        } catch {
            // Refused at once (no route, no port): a failure like any other.
            isClosed = true
            if node.recordFailure(limit: worker.topology.configuration.failureLimit) {
                worker.nodeMarkedDown(node)
            }
        }
    }

    var isUsable: Bool { !isClosed && node.isUp && node.epoch == epoch }
    var pendingCount: Int { inFlight.count }

    /// Queues a request: `write` appends its bytes to the connection's output.
    /// The bytes leave when the worker flushes at the end of the current event.
    /// A write that entered a `KeyFence` stripe names it in `fence`; the stripe
    /// is left once the node answers, or the request fails.
    func send(call: ReplyReceiver, tag: Int, shape: ReplyShape, fence: Int = -1, write: (inout ByteBuffer) -> Void) {
        guard let connection, !isClosed else {
            if fence >= 0 { worker.context.fence.exitWrite(fence) }
            call.backend(node, failed: .connectionLost, tag: tag)
            return
        }
        write(&connection.output)
        inFlight.append(InFlight(call: call, tag: tag, shape: shape, sentAt: worker.now, queuedAt: worker.eventNanoseconds,
                                 fence: fence))
        node.requests.wrappingAdd(1, ordering: .relaxed)
        if !isQueuedForFlush {
            isQueuedForFlush = true
            worker.backendNeedsFlush(self)
        }
    }

    func flush() {
        isQueuedForFlush = false
        connection?.flush()
    }

    /// Fails what is in flight when the oldest request waited too long or the
    /// connect did not finish in time. Called by the worker's timer.
    func checkDeadlines(now: Int64, requestTimeout: Int64, connectTimeout: Int64) {
        guard !isClosed, let connection else { return }
        if connection.isConnecting {
            if now - connectStarted > connectTimeout { fail(.timeout) }
            return
        }
        if let oldest = inFlight.first, now - max(oldest.sentAt, lastProgress) > requestTimeout {
            node.timeouts.wrappingAdd(1, ordering: .relaxed)
            fail(.timeout)
        }
    }

    /// Closes with a reset and fails every request in flight.
    func fail(_ failure: BackendFailure) {
        guard !isClosed else { return }
        isClosed = true
        let limit = worker.topology.configuration.failureLimit
        if failure != .nodeDown && node.recordFailure(limit: limit) {
            worker.nodeMarkedDown(node)
        }
        connection?.abort()
        connection = nil
        failInFlight(failure)
    }

    private func failInFlight(_ failure: BackendFailure) {
        while !inFlight.isEmpty {
            let entry = inFlight.removeFirst()
            if entry.fence >= 0 { worker.context.fence.exitWrite(entry.fence) }
            entry.call.backend(node, failed: failure, tag: entry.tag)
        }
    }

    // MARK: ConnectionHandler

    func connectionReadable(_ connection: Connection) {
        worker.stampEvent()
        lastProgress = worker.now
        readReplies(connection)
    }

    private func readReplies(_ connection: Connection) {
        let input = connection.input.readableBytes
        var consumed = 0
        var units = 0
        defer {
            if !isClosed { connection.input.consume(consumed) }
            if units > 0 { node.recordSuccess() }
        }
        while consumed < input.count {
            let pending = UnsafeRawBufferPointer(rebasing: input[consumed...])
            switch parser.parse(pending) {
            case .response(let unit):
                // A reply nobody asked for, or one the request at the head could
                // not have caused: the stream is out of step, and handing the
                // unit on could give one client another's data.
                guard let entry = inFlight.first else { return fail(.malformedReply) }
                let verdict = entry.shape.judge(unit.kind)
                if verdict == .outOfStep { return fail(.malformedReply) }
                let last = verdict == .last
                consumed += unit.length
                units += 1
                guard entry.call.backend(node, received: unit, in: pending, tag: entry.tag, last: last) else {
                    return fail(.malformedReply)
                }
                if isClosed { return }
                if last {
                    node.latency.record(series: worker.index, nanoseconds: worker.eventNanoseconds - entry.queuedAt)
                    inFlight.removeFirst()
                    if entry.fence >= 0 { worker.context.fence.exitWrite(entry.fence) }
                }
            case .needMoreData(let total):
                connection.input.consume(consumed)
                consumed = 0
                if let total { connection.input.reserveWritable(total - connection.input.readableCount) }
                return
            case .malformed:
                return fail(.malformedReply)
            }
        }
    }

    func connectionDrained(_ connection: Connection) {}

    func connectionClosed(_ connection: Connection) {
        guard !isClosed else { return }
        worker.stampEvent()
        isClosed = true
        self.connection = nil
        // Closed by the node's end: it may have restarted and lost its data.
        worker.nodeConnectionLost(node)
        // An idle connection the node closed is not a failure in itself; the next
        // connect will tell. One closed with requests in flight, or by an error, is.
        if (!inFlight.isEmpty || connection.closeError != 0)
            && node.recordFailure(limit: worker.topology.configuration.failureLimit) {
            worker.nodeMarkedDown(node)
        }
        failInFlight(.connectionLost)
    }
}
