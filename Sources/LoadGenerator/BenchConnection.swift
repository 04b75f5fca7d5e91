import Buffers
import EventLoop
import MemcacheProtocol

/// One connection to one server: frames the replies and matches them, in order,
/// to the requests in flight. Issuing new requests is the worker's business.
/// Loop thread only.
///
///   read ──► input ──► ResponseParser (one unit) ──► front PendingRequest
///                                                      │ VALUE/VA: hit (+ verify)
///                                                      │ END/STORED/HD/EN/MN: complete ──► worker.complete
///   worker.refill ──► RequestEncoder ──► output ──► one write per wake-up
final class BenchConnection: ConnectionHandler {
    // Safe because the worker owns its connections and outlives them.
    unowned(unsafe) let worker: BenchWorker
    let serverIndex: Int
    /// Position among all connections of the run (threads x connections).
    let globalIndex: Int
    /// Position among its worker's connections (the open-loop slot target).
    let localIndex: Int
    var connection: Connection?
    var inFlight: InFlightQueue
    private let parser = ResponseParser(maxLineLength: 64 * 1024)
    /// When this connection last received bytes (or went from idle to busy).
    var lastProgress: UInt64 = 0
    /// `VERSION` text from the probe.
    var serverVersion: String?
    /// Why this side closed the connection, so `connectionClosed` does not count it twice.
    var closingReason: ClosingReason?

    // Open loop: slots that found the pipeline full, oldest first. Their slot numbers
    // are backlogFirstSlot, + connectionsPerThread, ... (slot s belongs to s mod n).
    var backlogFirstSlot: UInt64 = 0
    var backlogCount = 0

    // --fill: the keys still to write.
    var fillNext: UInt64 = 0
    var fillEnd: UInt64 = 0

    enum ClosingReason { case endOfRun, timeout, protocolError }

    init(worker: BenchWorker, serverIndex: Int, globalIndex: Int, localIndex: Int, queueCapacity: Int) {
        self.worker = worker
        self.serverIndex = serverIndex
        self.globalIndex = globalIndex
        self.localIndex = localIndex
        inFlight = InFlightQueue(capacity: queueCapacity)
    }

    var isOpen: Bool { connection != nil }

    /// Closes on purpose; `reason` decides how (whether) the loss is counted.
    func close(_ reason: ClosingReason) {
        guard let connection else { return }
        closingReason = reason
        connection.close()
    }

    // MARK: ConnectionHandler

    func connectionReadable(_ connection: Connection) {
        let now = MonotonicClock.now()
        lastProgress = now
        let worker = self.worker
        if worker.measuring { worker.statistics.bytesReceived &+= UInt64(connection.lastReadCount) }
        let bytes = connection.input.readableBytes
        var offset = 0
        // The size of the unit still arriving, when its header says (a data block).
        var wanted = 0
        parsing: while offset < bytes.count {
            let unit = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            switch parser.parse(unit) {
            case .response(let response):
                guard handle(response, unit, now: now) else {
                    worker.protocolError(on: self, reason: "unexpected reply", unit: unit, length: response.length)
                    return
                }
                offset += response.length
            case .needMoreData(let totalLength):
                wanted = totalLength ?? 0
                break parsing
            case .malformed:
                worker.protocolError(on: self, reason: "malformed reply", unit: unit, length: unit.count)
                return
            }
        }
        connection.input.consume(offset)
        // Room for a whole large value at once, instead of growing 16 KiB per read.
        let missing = wanted - connection.input.readableCount
        if missing > 0 { connection.input.reserveWritable(missing) }
        worker.refill(self, connection, now: now)
    }

    func connectionDrained(_ connection: Connection) {}

    func connectionClosed(_ connection: Connection) {
        self.connection = nil
        worker.connectionClosed(self, reason: closingReason)
    }

    // MARK: Replies

    /// Applies one reply unit to the oldest request. False: the reply does not fit.
    @inline(__always)
    private func handle(_ response: Response, _ unit: UnsafeRawBufferPointer, now: UInt64) -> Bool {
        guard !inFlight.isEmpty else { return false }
        let request = inFlight.front
        switch request.pointee.kind {
        case .textGet:
            switch response.kind {
            case .value:
                request.pointee.hits &+= 1
                if worker.verifying { worker.verify(key: unit.slice(response.key), data: unit.slice(response.data)) }
            case .end: worker.complete(self, now: now)
            case .error, .clientError, .serverError: worker.failed(self, response, unit, now: now)
            default: return false
            }
        case .textSet:
            switch response.kind {
            case .stored: worker.complete(self, now: now)
            case .notStored, .exists, .notFound: worker.notStored(self, now: now)
            case .error, .clientError, .serverError: worker.failed(self, response, unit, now: now)
            default: return false
            }
        case .metaGet:
            switch response.kind {
            case .metaValue:
                request.pointee.hits = 1
                if worker.verifying { verifyMeta(response, unit) }
                worker.complete(self, now: now)
            case .metaMiss: worker.complete(self, now: now)
            case .error, .clientError, .serverError: worker.failed(self, response, unit, now: now)
            default: return false
            }
        case .metaMultiGet:
            switch response.kind {
            case .metaValue:
                request.pointee.hits &+= 1
                if worker.verifying { verifyMeta(response, unit) }
            case .metaMiss: break    // quiet mode hides misses; tolerate a server that does not
            case .metaNoop: worker.complete(self, now: now)
            // One `mg` of the batch failed; the batch still ends with MN.
            case .error, .clientError, .serverError: worker.countServerError(response, unit)
            default: return false
            }
        case .metaSet:
            switch response.kind {
            case .metaHit: worker.complete(self, now: now)
            case .metaNotStored, .metaExists, .metaNotFound: worker.notStored(self, now: now)
            case .error, .clientError, .serverError: worker.failed(self, response, unit, now: now)
            default: return false
            }
        case .versionProbe:
            guard response.kind == .version else { return false }
            serverVersion = String(decoding: unit.slice(response.text), as: UTF8.self)
            worker.probeAnswered(self)
        case .noopProbe:
            guard response.kind == .metaNoop else { return false }
            worker.probeAnswered(self)
        }
        return true
    }

    /// `VA <size> k<key> ...`: the key comes back as a return flag (requested with `k`).
    private func verifyMeta(_ response: Response, _ unit: UnsafeRawBufferPointer) {
        var index = response.metaFlags.lowerBound
        let end = response.metaFlags.upperBound
        while index < end {
            var tokenEnd = index
            while tokenEnd < end && unit[tokenEnd] != 0x20 { tokenEnd += 1 }
            if unit[index] == UInt8(ascii: "k") {
                worker.verify(key: unit.slice((index + 1)..<tokenEnd), data: unit.slice(response.data))
                return
            }
            index = tokenEnd + 1
        }
        worker.verify(key: unit.slice(0..<0), data: unit.slice(response.data))
    }
}

extension UnsafeRawBufferPointer {
    @inline(__always)
    func slice(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: self[range])
    }
}
