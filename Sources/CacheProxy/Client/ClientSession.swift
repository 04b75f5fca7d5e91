import Buffers
import EventLoop
import MemcacheProtocol

/// One client connection to the proxy. Requests are framed with the same parser
/// as the node's (so malformed input gets memcached's answer without reaching a
/// node), each gets a `ProxiedRequest` in request order, and replies are written in
/// that order however the nodes interleave. Loop thread only.
///
/// A client costs only itself: it stops being read while its replies back up,
/// the reply bytes it may have waiting in the proxy are capped
/// (`client_reply_max`), and a large reply is written as its socket drains.
final class ClientSession: ConnectionHandler {
    unowned let worker: ProxyWorker
    private(set) var connection: Connection?
    private var requests = RingQueue<ProxiedRequest>(capacity: 16)
    private var spareRequests: [ProxiedRequest] = []
    /// Framing state across reads (a refused data block being dropped).
    private var stream: RequestStream
    /// A close is pending (quit, or a stream that cannot be framed): read nothing more.
    private var finished = false
    /// Nothing has been read yet: the first byte tells the protocol.
    private var atStart = true
    private var flushQueued = false
    /// Inside `deliverCompleted`: a request completing now is picked up by that loop.
    private var delivering = false
    /// A request that is moving its key (KeyMigration): later requests of this
    /// session wait for it, so they see the key as it will be after that request,
    /// as they would on one memcached.
    private var holdingRequest: ProxiedRequest?
    /// Inside `processInput`.
    private var processing = false
    /// The lane (see `Lane`) this session's requests to nodes go in, and how
    /// many of them await an answer in each. Replies come back in order only
    /// within one connection, so a request for the other lane waits until the
    /// node has answered everything sent before it: a pipelined `set` then
    /// `get a b` must read what the set stored, as on one memcached.
    private var lane = Lane.requests
    private var inFlight = (requests: 0, bulk: 0)
    private var waitingForLane = false
    /// The proxy is shutting down (`drain`): nothing more is read.
    private var draining = false
    /// The last parse reached the end of the complete requests in the input.
    private var inputExhausted = false
    /// Reply bytes collected from nodes for this client and not yet written to
    /// its connection's output.
    private(set) var heldReplyBytes = 0
    private let replyLimit: Int
    /// Spreads sessions over a node's connections; a session always uses the
    /// same one, so its requests to a node are answered in the order it sent them.
    let affinity: Int

    /// Stop reading while this many requests wait or this much output is unsent.
    static let maxPendingRequests = 1024
    static let outputHighWater = 1 << 20

    init(worker: ProxyWorker) {
        self.worker = worker
        let configuration = worker.topology.configuration
        stream = RequestStream(parser: RequestParser(limits: RequestLimits(
            maxKeyLength: 250, itemSizeMax: configuration.itemSizeMax, casEnabled: true,
            maxLineLength: configuration.requestLineMax)))
        replyLimit = configuration.clientReplyMax
        affinity = worker.nextAffinity()
    }

    func attach(_ connection: Connection) { self.connection = connection }

    // MARK: ConnectionHandler

    func connectionReadable(_ connection: Connection) {
        worker.counters.add(.bytesRead, UInt64(connection.lastReadCount))
        processInput(connection)
    }

    func connectionDrained(_ connection: Connection) {
        worker.stampEvent()
        deliverCompleted()
        resumeIfRelieved(connection)
    }

    /// The client half-closed: answer everything it sent, then close.
    func connectionInputEnded(_ connection: Connection) {
        processInput(connection)
        closeIfDone(connection)
    }

    func connectionClosed(_ connection: Connection) {
        self.connection = nil
        finished = true
        // Work still under way for this session ends here: replies still
        // coming are dropped, multi-get rounds and key moves stop.
        // Every request this session made forgets it, the idle ones too: their
        // node calls may still be answered (noreply, write_policy primary).
        while let proxied = requests.first {
            requests.removeFirst()
            proxied.abandon()
        }
        for proxied in spareRequests { proxied.abandon() }
        spareRequests.removeAll()
        holdingRequest = nil
        worker.sessionClosed(self)
    }

    // MARK: Requests

    private func isBackedUp(_ connection: Connection) -> Bool {
        requests.count >= ClientSession.maxPendingRequests
            || connection.output.readableCount >= ClientSession.outputHighWater
            || heldReplyBytes >= replyLimit
    }

    /// Routes every complete request in the input buffer (until backed up).
    private func processInput(_ connection: Connection) {
        guard !finished, !processing else { return }
        if atStart, let first = connection.input.readableBytes.first {
            atStart = false
            // A binary-protocol request: the proxy speaks text and meta only.
            // Close, as the node and memcached without -B do, rather than leave
            // the client waiting for a reply.
            if first == 0x80 {
                finished = true
                connection.close()
                return
            }
            // Answered as text, as memcached does, but said: a client set up for TLS.
            if connection.plainTextPeerSentTLSHandshake {
                worker.context.plainTextTLSClient("a TLS handshake on the plain-text listener (tls: is not set): answered as text")
            }
        }
        processing = true
        defer { processing = false }
        worker.stampEvent()
        let input = connection.input.readableBytes
        // Reused for every request of this read: the parser writes into it
        // instead of returning a fresh ~250-byte value each time.
        var request = Request(command: .get)
        var consumed = 0
        var needed: Int?
        inputExhausted = false
        parsing: while true {
            if isBackedUp(connection) || holdingRequest != nil || waitingForLane {
                connection.pauseReading()
                if isBackedUp(connection) { connection.notifyWhenWritable() }
                break
            }
            // Safe because `input` stays valid: routing copies what it keeps.
            switch stream.next(input, consumed: &consumed, into: &request) {
            case .request(let start):
                let bytes = UnsafeRawBufferPointer(rebasing: input[start...])
                let wanted = Router.lane(of: request, in: bytes)
                if wanted != lane {
                    if inFlight(lane) > 0 {
                        // Parsed again once the other lane is answered.
                        consumed = start
                        waitingForLane = true
                        connection.pauseReading()
                        break parsing
                    }
                    lane = wanted
                }
                let proxied = newRequest()
                Router.route(request, in: bytes, proxied: proxied, session: self)
                if proxied.closesSession {
                    finished = true
                    break parsing
                }
            case .needMoreData(let total):
                needed = total
                inputExhausted = true
                break parsing
            case .invalid(let error, let quiet):
                worker.counters.add(.clientErrors)
                let proxied = newRequest()
                if quiet { proxied.complete() } else { proxied.complete(line: error.line) }
            case .tooLarge(let start):
                // Its delete of the old value must not overtake a multi-get still
                // out on the other lane: the same lane rule as any request.
                if lane != .requests {
                    if inFlight(lane) > 0 {
                        stream.rewind()
                        consumed = start
                        waitingForLane = true
                        connection.pauseReading()
                        break parsing
                    }
                    lane = .requests
                }
                let proxied = newRequest()
                // As memcached: a value that can never be stored also removes the old one.
                Router.routeTooLarge(request, in: UnsafeRawBufferPointer(rebasing: input[start...]), proxied: proxied, session: self)
            case .close:
                closeAfterEarlierReplies(reply: nil)
                break parsing
            case .lineTooLong:
                worker.counters.add(.clientErrors)
                closeAfterEarlierReplies(reply: ProtocolError.lineTooLong.line)
                break parsing
            }
        }
        if finished {
            // Nothing more will be parsed; drop the rest at once.
            connection.input.removeAll()
        } else {
            connection.input.consume(consumed)
            if let needed, needed > connection.input.readableCount {
                connection.input.reserveWritable(needed - connection.input.readableCount)
            }
        }
        deliverCompleted()
    }

    /// Ends the session once every earlier request is answered, after `reply`.
    private func closeAfterEarlierReplies(reply: StaticString?) {
        let proxied = newRequest()
        proxied.closesSession = true
        if let reply { proxied.complete(line: reply) } else { proxied.complete() }
        finished = true
    }

    /// A request at the back of the queue, ready to be routed.
    private func newRequest() -> ProxiedRequest {
        let proxied = spareRequests.popLast() ?? ProxiedRequest()
        proxied.begin(session: self, worker: worker)
        requests.append(proxied)
        return proxied
    }

    private func inFlight(_ lane: Lane) -> Int {
        lane == .bulk ? inFlight.bulk : inFlight.requests
    }

    func nodeRequestSent(in lane: Lane) {
        if lane == .bulk { inFlight.bulk += 1 } else { inFlight.requests += 1 }
    }

    func nodeRequestAnswered(in lane: Lane) {
        if lane == .bulk { inFlight.bulk -= 1 } else { inFlight.requests -= 1 }
        guard waitingForLane, inFlight(self.lane) == 0 else { return }
        waitingForLane = false
        if !processing, let connection { resumeIfRelieved(connection) }
    }

    /// Stops routing this session's next requests until `proxied` completes.
    func hold(until proxied: ProxiedRequest) { holdingRequest = proxied }

    /// Takes `count` more bytes of replies waiting in the proxy; false (and
    /// nothing taken) when that would go over `client_reply_max`.
    func charge(_ count: Int) -> Bool {
        guard heldReplyBytes + count <= replyLimit else { return false }
        heldReplyBytes += count
        return true
    }

    /// A request got its reply: write whatever is now first in line.
    func requestCompleted(_ proxied: ProxiedRequest) {
        let released = proxied === holdingRequest
        if released { holdingRequest = nil }
        if requests.first === proxied && !delivering { deliverCompleted() }
        // The held requests wait in the input; route them now (unless this runs
        // from inside routing, which carries on by itself).
        if released, !processing, let connection { resumeIfRelieved(connection) }
    }

    /// Moves finished replies at the front of the queue to the output, in order.
    private func deliverCompleted() {
        guard let connection, !connection.isClosed, !delivering else { return }
        // Work run at the front (stats) completes its request from inside this loop.
        delivering = true
        defer { delivering = false }
        var delivered = false
        while let head = requests.first {
            if !head.isComplete, let work = head.whenFirst {
                head.whenFirst = nil
                work(head)
            }
            guard head.isComplete else { break }
            let before = connection.output.readableCount
            if !head.reply.isEmpty {
                connection.output.append(head.reply.readableBytes)
                head.reply.removeAll()
            }
            if let stream = head.stream {
                // A large reply goes out as the socket drains: at most the high
                // water mark is added now, the rest once it is written.
                let done = stream.write(into: &connection.output, until: ClientSession.outputHighWater)
                worker.counters.add(.bytesWritten, UInt64(connection.output.readableCount - before))
                delivered = true
                if !done {
                    connection.notifyWhenWritable()
                    break
                }
                head.stream = nil
            } else {
                worker.counters.add(.bytesWritten, UInt64(connection.output.readableCount - before))
                delivered = true
            }
            requests.removeFirst()
            heldReplyBytes -= head.heldBytes
            // Kept even when it ends the session: the request may be a reused
            // one whose earlier node calls are still out (a noreply write), and
            // `connectionClosed` must abandon it before the session goes.
            spareRequests.append(head)
            if head.closesSession {
                connection.closeAfterFlush()
                return
            }
        }
        if delivered && !flushQueued {
            flushQueued = true
            worker.sessionNeedsFlush(self)
        }
        closeIfDone(connection)
    }

    /// The proxy is shutting down: route what was read, stop reading, and end
    /// the connection cleanly once every reply is written.
    func drain() {
        guard let connection, !draining else { return }
        draining = true
        connection.stopReadingAfterWhatArrived()
        processInput(connection)
        closeIfDone(connection)
    }

    /// After a half-close or during a shutdown, the session ends once every
    /// request read is answered.
    private func closeIfDone(_ connection: Connection) {
        guard requests.isEmpty, !connection.isClosed else { return }
        if draining {
            // Requests still parked in the input (behind a full output) come first.
            guard inputExhausted || finished else { return }
            finished = true
            return connection.closeGracefully()
        }
        guard connection.inputEnded else { return }
        // What could not be framed yet never will be.
        finished = true
        connection.closeAfterFlush()
    }

    /// Writes the replies gathered in this event. Called by the worker.
    func flush() {
        flushQueued = false
        guard let connection else { return }
        connection.flush()
        resumeIfRelieved(connection)
    }

    private func resumeIfRelieved(_ connection: Connection) {
        guard connection.isReadingPaused, !finished, !connection.isClosed, !isBackedUp(connection), holdingRequest == nil,
              !waitingForLane else { return }
        processInput(connection)
        // Routing may have stopped again, for the same reasons.
        if !isBackedUp(connection) && !finished && holdingRequest == nil && !waitingForLane && !draining {
            connection.resumeReading()
        }
        if connection.inputEnded { closeIfDone(connection) }
    }
}
