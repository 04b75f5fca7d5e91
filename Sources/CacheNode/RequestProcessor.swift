import Buffers
import CacheStorage
import MemcacheProtocol

// A request's way through the node:
//
//   ClientSession ---bytes---> RequestParser ---Request---> RequestProcessor
//          ^                                                       |  withShard { lookup / allocate / link }
//          '------------- output ByteBuffer <--- replies ----------'
//
// The processor holds no per-connection state: everything a request needs is
// in the Request (byte ranges into the connection's input) and the storage.

/// What the connection does after a request has been answered.
enum Disposition: Equatable {
    case proceed
    /// `quit`, `shutdown`: write what is pending, then close; later pipelined
    /// requests are dropped.
    case close
    /// A multi-key get or a metadump filled the output to its limit: write it
    /// out, then execute the same request again; `resume` says where it stopped.
    case suspended
    /// A metadump wrote its `END`: as after memcached's dump, no reply of an
    /// earlier request is held back any more (see ClientSession).
    case dumped
}

/// Executes parsed requests against the storage and writes memcached's replies.
/// One per worker thread; only that thread calls it.
final class RequestProcessor {
    let context: NodeContext
    let counters: WorkerCounters
    let storage: ItemStore
    let clock: ServerClock
    /// `stats detail`: checked once per request (`isEnabled`) on the paths it counts.
    let prefixes: PrefixStatistics
    /// Room for a base64-decoded key (meta `b`), so decoding allocates nothing.
    let decodedKey: UnsafeMutableRawBufferPointer

    init(context: NodeContext, counters: WorkerCounters) {
        self.context = context
        self.counters = counters
        self.storage = context.storage
        self.clock = context.clock
        self.prefixes = context.prefixStatistics
        self.decodedKey = .allocate(byteCount: 256, alignment: 8)
    }

    deinit { decodedKey.deallocate() }

    /// Answers one request. `bytes` is the buffer the request's ranges point into.
    /// A get of many keys stops adding values once `output` holds `outputLimit`
    /// bytes and answers `.suspended`; executed again with the same `resume`,
    /// it goes on from the next key. So naming one large item many times costs
    /// the output limit, not the item's size times the count. A metadump goes
    /// on the same way, from where its walk over the store stopped.
    /// `repliesHeld`: replies of earlier requests are still held back as
    /// memcached would hold them (see ClientSession), which refuses a metadump.
    func execute(_ request: Request, in bytes: UnsafeRawBufferPointer, output: inout ByteBuffer,
                 outputLimit: Int = .max, resume: inout Resumption, repliesHeld: Bool = false) -> Disposition {
        switch request.command {
        case .get, .gets, .gat, .gats:
            return retrieve(request, in: bytes, output: &output, outputLimit: outputLimit, resume: &resume)
        case .set, .add, .replace, .append, .prepend, .cas:
            storeClassic(request, in: bytes, output: &output)
        case .delete:
            delete(request, in: bytes, output: &output)
        case .incr, .decr:
            arithmetic(request, in: bytes, output: &output)
        case .touch:
            touch(request, in: bytes, output: &output)
        case .metaGet:
            metaGet(request, in: bytes, output: &output)
        case .metaSet:
            metaSet(request, in: bytes, output: &output)
        case .metaDelete:
            metaDelete(request, in: bytes, output: &output)
        case .metaArithmetic:
            metaArithmetic(request, in: bytes, output: &output)
        case .metaNoop:
            output.append("MN\r\n")
        case .metaDebug:
            metaDebug(request, in: bytes, output: &output)
        case .quit:
            return .close
        case .flushAll, .version, .verbosity, .shutdown, .stats, .cacheMemlimit,
             .slabs, .lru, .lruCrawler, .watch, .misbehave, .refreshCerts:
            return administer(request, in: bytes, output: &output, outputLimit: outputLimit,
                              resume: &resume, repliesHeld: repliesHeld)
        }
        return .proceed
    }

    /// A reply line, unless the client asked for none.
    @inline(__always)
    func reply(_ line: StaticString, noreply: Bool, output: inout ByteBuffer) {
        if !noreply { output.append(line) }
    }

    /// A classic storage request the parser refused after its command line was
    /// read (a bad data chunk): memcached has counted its `stats detail` set by then.
    func refusedStore(_ request: Request, in bytes: UnsafeRawBufferPointer) {
        guard prefixes.isEnabled else { return }
        switch request.command {
        case .set, .add, .replace, .append, .prepend, .cas: prefixes.recordSet(slice(bytes, request.key))
        default: break
        }
    }

    func replyError(_ error: ProtocolError, output: inout ByteBuffer) {
        output.append(error.line)
        output.append("\r\n")
    }

    /// The bytes of a range of the request buffer.
    @inline(__always)
    func slice(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[range])
    }

    /// The key a meta request names: its bytes, decoded from base64 when the `b`
    /// flag is set (nil if that decoding fails).
    func metaKey(_ request: Request, in bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        let raw = slice(bytes, request.key)
        guard request.meta.has(UInt8(ascii: "b")) else { return raw }
        guard let length = Base64.decode(raw, into: decodedKey) else { return nil }
        return UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(decodedKey)[0..<length])
    }
}
