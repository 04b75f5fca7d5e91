import Buffers
import MemcacheProtocol

// A proxied request's life, on one worker thread (twemproxy's nc_message.c
// draws the same chain). This type owns the request from the moment it is
// framed until its reply is written or its client is gone.
//
//   client bytes
//     |  ClientSession.processInput: RequestStream frames one request
//     v
//   ProxiedRequest (one per request in flight, reused; generation + 1)
//     |  Router.route: the command decides the work (.local .read .write
//     |  .compareAndSwap .flushAll .multiGet); forward() rebuilds the bytes
//     |  nodes get (`wire`), the key (`key`, `placementKey`) and the reply
//     |  shape; the ring gives the replica set
//     v
//   send: ReplicaOrder picks the replicas (read: first live; write: every
//     |  live one; cas: first live); KeyFence orders writes and copies; the
//     |  session's lane picks the connection; tag = generation | position | flags
//     v
//   BackendConnection (in flight: receiver, tag, shape) -----> node
//     |  node's bytes --> ResponseParser --> ReplyShape.judge
//     |      out of step: the connection closes, every request on it fails
//     v
//   backend(received:) --> readReceived | writeReceived | MultiGet.received
//     |  failed: readFailed -> next live replica; a miss -> KeyMigration
//     |  (refill, warm-up) or miss_failover; a missed write -> node down
//     v
//   complete() --> ClientSession.requestCompleted --> written in request
//                  order (a large multi-get as the socket drains, ReplyStream)
//   a write, once every replica answered --> ReplicaCheck reads the key back
//                  from each and repairs copies that stay different
//
//   client gone --> abandon(): generation + 1, so replies still coming are
//                   dropped; a multi-get's rounds and key moves stop.

/// One client request on its way through the proxy, and the reply it will get.
/// A session keeps its requests in request order and writes each reply only when
/// every earlier one has been written, whatever order the nodes answer in.
///
/// The request is also the `ReplyReceiver` its nodes answer to. Requests are reused:
/// `generation` changes on every reuse and travels in each call's tag, so a
/// late reply meant for an earlier request is recognised and dropped.
final class ProxiedRequest: ReplyReceiver {
    /// What the request is doing with the nodes.
    enum Work {
        /// Answered by the proxy itself.
        case local
        /// A read served by one replica at a time, primary first.
        case read
        /// A write sent to every live replica.
        case write
        /// A compare-and-swap: one node, then a copy of the result to the others.
        case compareAndSwap
        /// flush_all on every node.
        case flushAll
        /// A multi-key get split over nodes.
        case multiGet(MultiGet)
    }

    /// How a successful compare-and-swap reaches the other replicas.
    struct CopySpec {
        var clientFlags: UInt32 = 0
        var exptime: Int64 = 0
        /// The value inside `request`.
        var data: Range<Int> = 0..<0
        /// ms append/prepend with C: the result is only known to the node, so it
        /// is read back before being copied.
        var readBack = false
    }

    private(set) var generation = 0
    /// The session waiting for this request; nil once that session has closed.
    /// unowned(unsafe): read for every node call and reply, and a weak load
    /// costs an atomic round trip each time. Safe because a closing session
    /// clears it in every request it ever made (`abandon`) before it goes away.
    private(set) unowned(unsafe) var session: ClientSession?
    /// The bytes the client will get (then `stream`'s, if any).
    var reply = ByteBuffer(capacity: 128)
    /// The rest of a reply too large to hold whole.
    var stream: ReplyStream?
    /// Reply bytes charged to the session (`ClientSession.charge`), given back
    /// once the reply is written.
    private(set) var heldBytes = 0
    /// A read's reply went over the session's `client_reply_max`: the rest is
    /// dropped as it comes and the client gets memcached's out-of-memory error.
    var overBudget = false
    /// The request as it is sent to nodes (see `Router.forward`).
    var wire = ByteBuffer(capacity: 128)
    /// The key's bytes inside `request`, as the client sent them.
    var key: Range<Int> = 0..<0
    /// The key was sent in base64 (meta `b`): it is placed on the ring by its
    /// decoded bytes, like the same key sent as text.
    var keyIsBase64 = false
    /// The decoded key of a base64 key.
    private var decodedKey = ByteBuffer(capacity: 64)
    private(set) var isComplete = false
    /// quit, or a stream that cannot be framed: close once this reply is written.
    var closesSession = false

    var work = Work.local
    /// Classic `noreply`: the client gets nothing, whatever the nodes answer.
    var noreply = false
    var shape = ReplyShape.meta
    var command = Command.get
    var topology: Topology?
    /// The nodes the key is read from, written to and invalidated at (its
    /// replica set, or more during a membership change).
    var route = KeyRoute(reads: ReplicaSet(), writes: ReplicaSet())
    /// Reads: the position in `route.reads` being tried.
    var attempt = 0
    /// Writes and flushes: replies still awaited.
    var outstanding = 0
    /// Writes: where each replica position stands, and where its answer sits in `answers`.
    var answers = ByteBuffer(capacity: 64)
    var positions: [PositionState] = []

    enum PositionState: Equatable {
        case notSent, pending, failed
        /// A quiet request's line came; its MN has not.
        case heard(Range<Int>)
        case answered(Range<Int>)
    }
    /// Work that must wait until every earlier request of the session has its
    /// reply (`stats` counts them), run when this request reaches the front.
    var whenFirst: ((ProxiedRequest) -> Void)?
    /// Compare-and-swap: what a success is copied to the other replicas with.
    var copy = CopySpec()
    /// Reads: VALUE units seen (a retrieval with none is a miss).
    var valuesSeen = 0
    /// Reads: a miss at the primary was already retried (miss_failover, warm-up).
    var retriedMiss = false
    /// The `KeyFence` stripe this write holds while its node requests are
    /// answered, or -1 for requests that need none (reads, plain overwrites).
    var fenceStripe = -1
    /// The write waits for a copy of its key to finish.
    var waitingForFence = false
    /// A replica took the write (stored, deleted, counted): its copies are
    /// checked once all replicas answered (`ReplicaCheck`).
    var changedData = false
    /// A read that also sets the expiry (gat, gats, mg with T): the expiry the
    /// other replicas get once one of them served it.
    var touchExptime: Int64?

    unowned(unsafe) var worker: ProxyWorker!
    /// When the proxy read the request (the worker's event stamp, ns).
    private var arrivedAt: Int64 = 0

    /// Prepares the request for a new request of `session`.
    func begin(session: ClientSession, worker: ProxyWorker) {
        generation &+= 1
        self.session = session
        self.worker = worker
        arrivedAt = worker.eventNanoseconds
        reply.removeAll()
        stream = nil
        heldBytes = 0
        overBudget = false
        wire.removeAll()
        answers.removeAll()
        positions.removeAll(keepingCapacity: true)
        isComplete = false
        closesSession = false
        cancelWork()
        noreply = false
        keyIsBase64 = false
        shape = .meta
        topology = nil
        route = KeyRoute(reads: ReplicaSet(), writes: ReplicaSet())
        attempt = 0
        outstanding = 0
        valuesSeen = 0
        retriedMiss = false
        fenceStripe = -1
        waitingForFence = false
        changedData = false
        touchExptime = nil
        copy = CopySpec()
        whenFirst = nil
    }

    /// The tag sent with a call: the request's generation, and in the low bits the
    /// replica position (or a multi-get batch) the call went to.
    @inline(__always) func tag(position: Int) -> Int { generation << 12 | position }
    /// Marks a call that changes data, so its failure is acted on even after the
    /// client got its answer (write_policy primary) or the request moved on.
    static let writeTagBit = 1 << 11
    /// Marks a call sent in the bulk lane (see `Lane`).
    static let bulkTagBit = 1 << 10
    /// Positions and multi-get batches fit below the flag bits.
    static let positionLimit = 1 << 10
    @inline(__always) func isCurrent(_ tag: Int) -> Bool { tag >> 12 == generation }
    @inline(__always) static func position(of tag: Int) -> Int { tag & (positionLimit - 1) }

    /// Sends this request (or a multi-get's batch) to a node, counting it as
    /// the session's until the node answers it (see `ClientSession.lane`).
    func send(to backend: BackendConnection, position: Int, lane: Lane = .requests, changesData: Bool = false,
              fence: Int = -1, shape: ReplyShape, _ write: (inout ByteBuffer) -> Void) {
        var tag = tag(position: position)
        if changesData { tag |= ProxiedRequest.writeTagBit }
        if lane == .bulk { tag |= ProxiedRequest.bulkTagBit }
        session?.nodeRequestSent(in: lane)
        backend.send(call: self, tag: tag, shape: shape, fence: fence, write: write)
    }

    private func nodeAnswered(_ tag: Int) {
        session?.nodeRequestAnswered(in: tag & ProxiedRequest.bulkTagBit != 0 ? .bulk : .requests)
    }

    /// Charges `count` reply bytes to the session; false when it may not hold them.
    func hold(_ count: Int) -> Bool {
        guard let session, session.charge(count) else { return false }
        heldBytes += count
        return true
    }

    /// The request's key bytes as sent (valid until the request is reused).
    var keyBytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: wire.readableBytes[key]) }

    /// The bytes that place the key on the ring: the key, decoded when it was
    /// sent in base64. False when a base64 key does not decode (the parser
    /// checked it, so only a bug gets there).
    func decodeKeyIfNeeded() -> Bool {
        guard keyIsBase64 else { return true }
        decodedKey.removeAll()
        decodedKey.reserveWritable(key.count)
        guard let length = Base64.decode(keyBytes, into: decodedKey.writableSpace) else { return false }
        decodedKey.commitWritten(length)
        return true
    }

    var placementKey: UnsafeRawBufferPointer { keyIsBase64 ? decodedKey.readableBytes : keyBytes }

    /// The reply is final: hand it to the session.
    func complete() {
        guard !isComplete else { return }
        isComplete = true
        worker.requestLatency.record(series: latencyClass.rawValue, nanoseconds: worker.eventNanoseconds - arrivedAt)
        if noreply { reply.removeAll() }
        topology = nil
        cancelWork()
        session?.requestCompleted(self)
    }

    /// The session closed before the reply was written: replies still coming
    /// are dropped (the generation no longer matches), and work that outlives
    /// the request (a multi-get's rounds, a key being moved) sees it is over.
    func abandon() {
        generation &+= 1
        session = nil
        isComplete = true
        topology = nil
        stream = nil
        cancelWork()
    }

    /// Breaks the multi-get's reference back to this request.
    private func cancelWork() {
        if case .multiGet(let state) = work { state.cancel() }
        work = .local
    }

    /// The `command` label this request's latency is kept under.
    private var latencyClass: RequestClass {
        switch work {
        case .local, .flushAll: return .other
        case .multiGet: return .multiget
        case .read, .write, .compareAndSwap:
            switch command {
            case .get, .gets, .gat, .gats, .metaGet, .metaDebug: return .get
            case .set, .add, .replace, .append, .prepend, .cas, .metaSet: return .set
            case .delete, .metaDelete: return .delete
            case .touch: return .touch
            case .incr, .decr, .metaArithmetic: return .arithmetic
            default: return .other
            }
        }
    }

    /// Completes with one line (an error or status) and `\r\n`.
    func complete(line: StaticString) {
        reply.removeAll()
        reply.append(line)
        reply.append("\r\n")
        complete()
    }

    /// Completes with a line built at run time.
    func complete(text: String) {
        reply.removeAll()
        reply.append(string: text)
        reply.append("\r\n")
        complete()
    }

    // MARK: ReplyReceiver

    func backend(_ node: BackendNode, received unit: Response, in bytes: UnsafeRawBufferPointer, tag: Int,
                 last: Bool) -> Bool {
        let accepted = handle(unit, in: bytes, tag: tag, last: last, node: node)
        // A unit refused fails the request (`backend(_:failed:tag:)`), counted there.
        if accepted && last { nodeAnswered(tag) }
        return accepted
    }

    private func handle(_ unit: Response, in bytes: UnsafeRawBufferPointer, tag: Int, last: Bool,
                        node: BackendNode) -> Bool {
        // A reply for an earlier request of this request, or one nobody waits for
        // any more, is dropped; the connection has already checked its shape.
        guard isCurrent(tag), !isComplete else { return true }
        let unitBytes = UnsafeRawBufferPointer(rebasing: bytes[0..<unit.length])
        switch work {
        case .read:
            // A VALUE for a key this request did not ask for: out of step.
            if unit.kind == .value && !UnsafeRawBufferPointer(rebasing: bytes[unit.key]).sameBytes(as: keyBytes) {
                return false
            }
            readReceived(unit, unitBytes, last: last, node: node)
        case .write, .compareAndSwap:
            return writeReceived(unit, unitBytes, position: ProxiedRequest.position(of: tag), last: last, node: node)
        case .flushAll:
            flushReceived(unit, unitBytes)
        case .multiGet(let state):
            return state.received(unit, in: bytes, tag: tag, last: last)
        case .local:
            break
        }
        return true
    }

    func backend(_ node: BackendNode, failed failure: BackendFailure, tag: Int) {
        nodeAnswered(tag)
        // The node may or may not have applied a write: were it to serve again
        // unflushed, it could return the value this write replaced.
        if tag & ProxiedRequest.writeTagBit != 0 { worker.missedWrite(on: node, failure: failure) }
        guard isCurrent(tag), !isComplete else { return }
        switch work {
        case .read:
            readFailed()
        case .write, .compareAndSwap:
            writeFailed(position: ProxiedRequest.position(of: tag), node: node, failure: failure)
        case .flushAll:
            flushFailed()
        case .multiGet(let state):
            state.failed(tag: tag)
        case .local:
            break
        }
    }
}
