import Buffers
import EventLoop
import MemcacheProtocol

/// One client connection to the proxy. Requests are framed with the same parser
/// as the node's (so malformed input gets memcached's answer without reaching a
/// node), each gets a `ReplySlot` in request order, and replies are written in
/// that order however the nodes interleave. Loop thread only.
final class ClientSession: ConnectionHandler {
    unowned let worker: ProxyWorker
    private(set) var connection: Connection?
    private var slots = RingQueue<ReplySlot>(capacity: 16)
    private var spareSlots: [ReplySlot] = []
    /// Framing state across reads (a refused data block being dropped).
    private var stream: RequestStream
    /// A close is pending (quit, or a stream that cannot be framed): read nothing more.
    private var finished = false
    private var flushQueued = false
    /// Inside `deliverCompleted`: a slot completing now is picked up by that loop.
    private var delivering = false
    /// A request that is moving its key (KeyMigration): later requests of this
    /// session wait for it, so they see the key as it will be after that request,
    /// as they would on one memcached.
    private var holdingSlot: ReplySlot?
    /// Inside `processInput`.
    private var processing = false
    /// Spreads sessions over a node's connections; a session always uses the
    /// same one, so its requests to a node are answered in the order it sent them.
    let affinity: Int

    /// Stop reading while this many requests wait or this much output is unsent.
    static let maxPendingRequests = 2048
    static let outputHighWater = 1 << 20

    init(worker: ProxyWorker) {
        self.worker = worker
        let configuration = worker.topology.configuration
        stream = RequestStream(parser: RequestParser(limits: RequestLimits(maxKeyLength: 250, itemSizeMax: configuration.itemSizeMax,
                                                                           casEnabled: true)))
        affinity = worker.nextAffinity()
    }

    func attach(_ connection: Connection) { self.connection = connection }

    // MARK: ConnectionHandler

    func connectionReadable(_ connection: Connection) {
        worker.counters.add(.bytesRead, UInt64(connection.lastReadCount))
        processInput(connection)
    }

    func connectionDrained(_ connection: Connection) {
        resumeIfRelieved(connection)
    }

    func connectionClosed(_ connection: Connection) {
        self.connection = nil
        finished = true
        // Replies still coming for this session go nowhere: the slots forget it.
        slots.removeAll()
        worker.sessionClosed(self)
    }

    // MARK: Requests

    private func isBackedUp(_ connection: Connection) -> Bool {
        slots.count >= ClientSession.maxPendingRequests || connection.output.readableCount >= ClientSession.outputHighWater
    }

    /// Routes every complete request in the input buffer (until backed up).
    private func processInput(_ connection: Connection) {
        guard !finished, !processing else { return }
        processing = true
        defer { processing = false }
        let input = connection.input.readableBytes
        // Reused for every request of this read: the parser writes into it
        // instead of returning a fresh ~250-byte value each time.
        var request = Request(command: .get)
        var consumed = 0
        var needed: Int?
        parsing: while true {
            if isBackedUp(connection) || holdingSlot != nil {
                connection.pauseReading()
                break
            }
            // Safe because `input` stays valid: routing copies what it keeps.
            switch stream.next(input, consumed: &consumed, into: &request) {
            case .request(let start):
                let slot = newSlot()
                Router.route(request, in: UnsafeRawBufferPointer(rebasing: input[start...]), slot: slot, session: self)
                if slot.closesSession {
                    finished = true
                    break parsing
                }
            case .needMoreData(let total):
                needed = total
                break parsing
            case .invalid(let error, let quiet):
                worker.counters.add(.clientErrors)
                let slot = newSlot()
                if quiet { slot.complete() } else { slot.complete(line: error.line) }
            case .tooLarge(let start):
                let slot = newSlot()
                // As memcached: a value that can never be stored also removes the old one.
                Router.routeTooLarge(request, in: UnsafeRawBufferPointer(rebasing: input[start...]), slot: slot, session: self)
            case .close:
                let slot = newSlot()
                slot.closesSession = true
                slot.complete()
                finished = true
                break parsing
            }
        }
        connection.input.consume(consumed)
        if let needed, needed > connection.input.readableCount {
            connection.input.reserveWritable(needed - connection.input.readableCount)
        }
        deliverCompleted()
    }

    /// A slot at the back of the queue, ready for a new request.
    private func newSlot() -> ReplySlot {
        let slot = spareSlots.popLast() ?? ReplySlot()
        slot.begin(session: self, worker: worker)
        slots.append(slot)
        return slot
    }

    /// Stops routing this session's next requests until `slot` completes.
    func hold(until slot: ReplySlot) { holdingSlot = slot }

    /// A slot got its reply: write whatever is now first in line.
    func slotCompleted(_ slot: ReplySlot) {
        let released = slot === holdingSlot
        if released { holdingSlot = nil }
        if slots.first === slot && !delivering { deliverCompleted() }
        // The held requests wait in the input; route them now (unless this runs
        // from inside routing, which carries on by itself).
        if released, !processing, let connection { resumeIfRelieved(connection) }
    }

    /// Moves finished replies at the front of the queue to the output, in order.
    private func deliverCompleted() {
        guard let connection, !delivering else { return }
        // Work run at the front (stats) completes its slot from inside this loop.
        delivering = true
        defer { delivering = false }
        var delivered = false
        while let head = slots.first {
            if !head.isComplete, let work = head.whenFirst {
                head.whenFirst = nil
                work(head)
            }
            guard head.isComplete else { break }
            slots.removeFirst()
            if !head.reply.isEmpty {
                worker.counters.add(.bytesWritten, UInt64(head.reply.readableCount))
                connection.output.append(head.reply.readableBytes)
            }
            delivered = true
            if head.closesSession {
                connection.closeAfterFlush()
                return
            }
            spareSlots.append(head)
        }
        if delivered && !flushQueued {
            flushQueued = true
            worker.sessionNeedsFlush(self)
        }
    }

    /// Writes the replies gathered in this event. Called by the worker.
    func flush() {
        flushQueued = false
        guard let connection else { return }
        connection.flush()
        resumeIfRelieved(connection)
    }

    private func resumeIfRelieved(_ connection: Connection) {
        guard connection.isReadingPaused, !finished, !connection.isClosed, !isBackedUp(connection), holdingSlot == nil else { return }
        processInput(connection)
        if !isBackedUp(connection) && !finished { connection.resumeReading() }
    }
}
