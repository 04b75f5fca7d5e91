import Buffers

/// Where the parts of a forwarded request sit in the buffer it was appended
/// to, as offsets from the buffer's readable start before the append.
public struct ForwardedLayout: Sendable, Equatable {
    /// The key as sent (for meta `b`, its base64 text).
    public var key: Range<Int>
    /// The data block of a storage command, without its `\r\n`.
    public var data: Range<Int>

    public init(key: Range<Int> = 0..<0, data: Range<Int> = 0..<0) {
        self.key = key
        self.data = data
    }
}

extension RequestEncoder {
    /// Appends what a proxy sends a node for a request it parsed: rebuilt from
    /// the parsed fields (numbers as the parser read them, meta flag tokens as
    /// it validated them), never from the raw line. Whatever the client put
    /// after a NUL byte, between tokens or around `noreply` is not repeated, so
    /// the node parses exactly the request the proxy parsed and answers it once.
    ///
    /// Classic `noreply` is never forwarded (the proxy needs every reply to keep
    /// a shared connection in step, and hides the reply itself); meta `q` is
    /// kept, and the caller follows a quiet meta request with `mn` so its reply
    /// still has an end. Only commands a proxy forwards one key at a time are
    /// accepted: retrieval with one key (`request.key`), storage, delete,
    /// incr/decr, touch, flush_all and the meta commands.
    @discardableResult
    public static func appendForwarded(_ request: Request, in bytes: UnsafeRawBufferPointer,
                                       to buffer: inout ByteBuffer) -> ForwardedLayout {
        let origin = buffer.readableCount
        var layout = ForwardedLayout()
        func appendKey() {
            let start = buffer.readableCount - origin
            buffer.append(UnsafeRawBufferPointer(rebasing: bytes[request.key]))
            layout.key = start..<(buffer.readableCount - origin)
        }
        func appendData() {
            let start = buffer.readableCount - origin
            buffer.append(UnsafeRawBufferPointer(rebasing: bytes[request.data]))
            layout.data = start..<(buffer.readableCount - origin)
            buffer.append("\r\n")
        }
        func space() { buffer.append(byte: 0x20) }

        switch request.command {
        case .get, .gets, .gat, .gats:
            appendRetrievalStart(request.command, exptime: request.exptime, to: &buffer)
            space()
            appendKey()
            buffer.append("\r\n")
        case .set, .add, .replace, .append, .prepend, .cas:
            buffer.append(classicName(request.command))
            space()
            appendKey()
            space()
            buffer.appendDecimal(UInt64(request.flags))
            space()
            buffer.appendDecimal(request.exptime)
            space()
            buffer.appendDecimal(UInt64(request.data.count))
            if request.command == .cas {
                space()
                buffer.appendDecimal(request.casUnique)
            }
            buffer.append("\r\n")
            appendData()
        case .delete:
            buffer.append("delete ")
            appendKey()
            buffer.append("\r\n")
        case .incr, .decr:
            buffer.append(request.command == .incr ? "incr " : "decr ")
            appendKey()
            space()
            buffer.appendDecimal(request.delta)
            buffer.append("\r\n")
        case .touch:
            buffer.append("touch ")
            appendKey()
            space()
            buffer.appendDecimal(request.exptime)
            buffer.append("\r\n")
        case .flushAll:
            buffer.append("flush_all")
            var arguments = 0
            for _ in KeyTokens(bytes, request.arguments) { arguments += 1 }
            if arguments > (request.noreply ? 1 : 0) {
                space()
                buffer.appendDecimal(request.exptime)
            }
            buffer.append("\r\n")
        case .metaGet, .metaDelete, .metaArithmetic, .metaSet:
            buffer.append(metaName(request.command))
            space()
            appendKey()
            if request.command == .metaSet {
                space()
                buffer.appendDecimal(UInt64(request.data.count))
            }
            // Each token was validated by the parser and none holds a space,
            // NUL or line end, so the node reads the same flags.
            for token in KeyTokens(bytes, request.meta.tokens) {
                space()
                buffer.append(UnsafeRawBufferPointer(rebasing: bytes[token]))
            }
            buffer.append("\r\n")
            if request.command == .metaSet { appendData() }
        case .metaDebug:
            // The node looks only at a `b` right after the key.
            buffer.append("me ")
            appendKey()
            if request.meta.has(UInt8(ascii: "b")) { buffer.append(" b") }
            buffer.append("\r\n")
        case .metaNoop:
            buffer.append("mn\r\n")
        case .version, .verbosity, .quit, .shutdown, .stats, .cacheMemlimit, .slabs, .lru, .lruCrawler, .watch,
             .misbehave, .refreshCerts:
            preconditionFailure("\(request.command) is answered by the proxy, never forwarded")
        }
        return layout
    }

    static func classicName(_ command: Command) -> StaticString {
        switch command {
        case .set: return "set"
        case .add: return "add"
        case .replace: return "replace"
        case .append: return "append"
        case .prepend: return "prepend"
        case .cas: return "cas"
        default: preconditionFailure("\(command) is not a classic storage command")
        }
    }

    static func metaName(_ command: Command) -> StaticString {
        switch command {
        case .metaGet: return "mg"
        case .metaSet: return "ms"
        case .metaDelete: return "md"
        case .metaArithmetic: return "ma"
        case .metaDebug: return "me"
        case .metaNoop: return "mn"
        default: preconditionFailure("\(command) is not a meta command")
        }
    }
}
