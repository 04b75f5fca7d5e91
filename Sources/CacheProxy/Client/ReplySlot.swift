import Buffers
import MemcacheProtocol

/// One client request on its way through the proxy, and the reply it will get.
/// A session keeps its slots in request order and writes each reply only when
/// every earlier one has been written, whatever order the nodes answer in.
///
/// The slot is also the `BackendCall` its nodes answer to. Slots are reused:
/// `generation` changes on every reuse and travels in each call's tag, so a
/// late reply meant for an earlier request is recognised and dropped.
final class ReplySlot: BackendCall {
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

    /// Which replies a quiet client does not want (classic `noreply`, meta `q`).
    enum Quiet {
        case none
        /// mg q: hide a miss (`EN`).
        case hideMiss
        /// ms/md/ma q: hide the nominal success (`HD`, or ma's `VA`).
        case hideSuccess
        /// Classic noreply on a request that waits for its nodes: hide everything.
        case hideAll
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
    /// The session waiting for this slot; nil once that session has closed.
    private(set) weak var session: ClientSession?
    /// The bytes the client will get.
    var reply = ByteBuffer(capacity: 128)
    /// The request as it is sent to nodes (noreply and q removed).
    var request = ByteBuffer(capacity: 128)
    /// The key's bytes inside `request`.
    var key: Range<Int> = 0..<0
    private(set) var isComplete = false
    /// quit, or a stream that cannot be framed: close once this reply is written.
    var closesSession = false

    var work = Work.local
    var quiet = Quiet.none
    var shape = ReplyShape.single
    var command = Command.get
    var topology: Topology?
    var replicas = ReplicaSet()
    /// Reads: the position in `replicas` being tried.
    var attempt = 0
    /// Writes and flushes: replies still awaited.
    var outstanding = 0
    /// Writes: where each replica position stands, and where its answer sits in `answers`.
    var answers = ByteBuffer(capacity: 64)
    var positions: [PositionState] = []

    enum PositionState: Equatable {
        case notSent, pending, failed
        case answered(Range<Int>)
    }
    /// Work that must wait until every earlier request of the session has its
    /// reply (`stats` counts them), run when this slot reaches the front.
    var whenFirst: ((ReplySlot) -> Void)?
    /// Compare-and-swap: what a success is copied to the other replicas with.
    var copy = CopySpec()
    /// Reads: VALUE units seen (a retrieval with none is a miss).
    var valuesSeen = 0
    /// Reads: a miss at the primary was already retried (miss_failover, warm-up).
    var retriedMiss = false

    unowned(unsafe) var worker: ProxyWorker!

    /// Prepares the slot for a new request of `session`.
    func begin(session: ClientSession, worker: ProxyWorker) {
        generation &+= 1
        self.session = session
        self.worker = worker
        reply.removeAll()
        request.removeAll()
        answers.removeAll()
        positions.removeAll(keepingCapacity: true)
        isComplete = false
        closesSession = false
        work = .local
        quiet = .none
        shape = .single
        topology = nil
        replicas = ReplicaSet()
        attempt = 0
        outstanding = 0
        valuesSeen = 0
        retriedMiss = false
        copy = CopySpec()
        whenFirst = nil
    }

    /// The tag sent with a call: the slot's generation, and in the low bits the
    /// replica position (or a multi-get batch) the call went to.
    @inline(__always) func tag(position: Int) -> Int { generation << 12 | position }
    /// Marks a call that changes data, so its failure is acted on even after the
    /// client got its answer (write_policy primary) or the slot moved on.
    static let writeTagBit = 1 << 11
    @inline(__always) func isCurrent(_ tag: Int) -> Bool { tag >> 12 == generation }
    @inline(__always) static func position(of tag: Int) -> Int { tag & 0x7FF }

    /// The request's key bytes (valid until the slot is reused).
    var keyBytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: request.readableBytes[key]) }

    /// The reply is final: hand it to the session.
    func complete() {
        guard !isComplete else { return }
        isComplete = true
        if quiet == .hideAll { reply.removeAll() }
        topology = nil
        if case .multiGet = work { work = .local }
        session?.slotCompleted(self)
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

    // MARK: BackendCall

    func backend(_ node: BackendNode, received unit: Response, in bytes: UnsafeRawBufferPointer, tag: Int, last: Bool) {
        guard isCurrent(tag), !isComplete else { return }
        let unitBytes = UnsafeRawBufferPointer(rebasing: bytes[0..<unit.length])
        switch work {
        case .read:
            readReceived(unit, unitBytes, last: last, node: node)
        case .write, .compareAndSwap:
            writeReceived(unit, unitBytes, position: ReplySlot.position(of: tag), node: node)
        case .flushAll:
            flushReceived(unit, unitBytes)
        case .multiGet(let state):
            state.received(unit, in: bytes, tag: tag, last: last)
        case .local:
            break
        }
    }

    func backend(_ node: BackendNode, failed failure: BackendFailure, tag: Int) {
        // The node may or may not have applied a write: were it to serve again
        // unflushed, it could return the value this write replaced.
        if tag & ReplySlot.writeTagBit != 0 { BackendNode.missedWrite(on: node, failure: failure, worker: worker) }
        guard isCurrent(tag), !isComplete else { return }
        switch work {
        case .read:
            readFailed()
        case .write, .compareAndSwap:
            writeFailed(position: ReplySlot.position(of: tag), node: node, failure: failure)
        case .flushAll:
            flushFailed()
        case .multiGet(let state):
            state.failed(tag: tag)
        case .local:
            break
        }
    }
}
