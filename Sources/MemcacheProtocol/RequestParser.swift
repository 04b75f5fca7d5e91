#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// How bytes become requests (memcached 1.6.18's text and meta protocols):
//
//   connection input buffer ──► RequestParser.parse(front of buffer)
//        ▲                          │ memchr '\n' → line; strip '\r'; cut at NUL
//        │                          │ LineTokens: ≤ 23 space-separated tokens (stack)
//        │                          │ dispatch on the first token's bytes
//        │                          ▼
//        └── consume / swallow ◄── ParseOutcome: .request (ranges into the buffer)
//                                   .needMoreData · .invalid · .tooLarge · .close
//                                  (or ParseStatus + an inout Request: parse(_:into:))
//
// The parser is a value with no state between calls: it looks at the front of the
// unconsumed input and answers one outcome; the caller consumes and loops. Nothing
// is copied and nothing allocated: a Request holds offsets into the buffer.

/// What the parser made of the bytes at the front of a buffer.
public enum ParseOutcome: Sendable {
    /// A complete request (and its data block); consume `request.length` bytes.
    case request(Request)
    /// Not enough bytes yet. `totalLength`, when known, is the size the whole
    /// request will have (line plus data block), so the caller can grow its buffer.
    case needMoreData(totalLength: Int?)
    /// Answer `error` (unless `quiet`: noreply suppressed it), consume `consume`
    /// bytes now, then drop the next `swallow` bytes as they arrive (a data block
    /// memcached discards). The connection stays usable.
    case invalid(ProtocolError, consume: Int, swallow: Int, quiet: Bool)
    /// A storage request whose value exceeds the item size limit: `request` has its
    /// command, key and noreply set; consume the line (`consume` bytes), drop
    /// `swallow` bytes of data as they arrive. memcached answers `SERVER_ERROR object
    /// too large for cache` (unless noreply) and deletes the key's old value for set and ms.
    ///
    /// Details checked on the binary: for `ms` the error is sent even with `q` and the
    /// old value is deleted whatever the `M` mode; for `add`/`replace`/`append`/
    /// `prepend`/`cas` the old value stays. memcached writes the reply only once the
    /// swallowed bytes have arrived (the order of replies is what matters).
    case tooLarge(Request, consume: Int, swallow: Int)
    /// The stream cannot be framed (an over-long line, an HTTP request): close the
    /// connection. memcached closes without a reply, and also
    /// drops the replies to earlier pipelined commands it has not written yet
    /// (`version\r\nGET / HTTP/1.1\r\n` gets nothing back); a node may flush them.
    case close
    /// A line (a multi-get's, the only kind memcached lets grow) longer than
    /// `RequestLimits.maxLineLength`: answer `CLIENT_ERROR line too long`, then
    /// close, so one client cannot make the server buffer without bound.
    case lineTooLong
}

/// Limits the parser enforces, with memcached's defaults.
public struct RequestLimits: Sendable {
    /// Longest key accepted (memcached: 250).
    public var maxKeyLength: Int = 250
    /// memcached's item size limit (`-I`), or nil to accept any size (a proxy
    /// leaves the decision to its backends).
    public var itemSizeMax: Int? = 1024 * 1024
    /// Whether CAS is enabled (`-C` off): it changes memcached's item size accounting.
    public var casEnabled: Bool = true
    /// Longest request line accepted, a multi-get's included (memcached has no
    /// such limit: it grows its buffer for `get` lines as long as they come).
    public var maxLineLength: Int = 2 << 20
    /// Whether `flush_all` is allowed (`-F` off). memcached checks `-F` before it
    /// parses the delay, so with `false` the parser hands every well-formed-arity
    /// `flush_all` to the caller unvalidated, to be answered `CLIENT_ERROR flush_all
    /// not allowed`.
    public var flushAllEnabled: Bool = true

    public init(maxKeyLength: Int = 250, itemSizeMax: Int? = 1024 * 1024, casEnabled: Bool = true,
                flushAllEnabled: Bool = true, maxLineLength: Int = 2 << 20) {
        self.maxKeyLength = maxKeyLength
        self.itemSizeMax = itemSizeMax
        self.casEnabled = casEnabled
        self.flushAllEnabled = flushAllEnabled
        self.maxLineLength = maxLineLength
    }

    /// memcached's `item_size_ok`: the item's `MemcachedItemSize.total` must fit
    /// `-I`. Verified on the binary: with `-I 1m` a 3-byte key takes at most
    /// 1048514 bytes (1048510 with flags, 1048522 with `-C`), a 250-byte key 1048267.
    @inlinable
    public func itemFits(keyLength: Int, flags: UInt32, valueLength: Int) -> Bool {
        guard let itemSizeMax else { return true }
        return MemcachedItemSize.total(keyLength: keyLength, valueLength: valueLength, clientFlags: flags,
                                       casEnabled: casEnabled) <= itemSizeMax
    }
}

/// memcached's framing constants.
public enum Framing {
    /// With this many bytes buffered and no `\n`, memcached closes the connection
    /// (unless the buffer starts with `get `/`gets `). Strictly more than 2048.
    public static let lineWithoutNewlineLimit = 2048
    /// memcached's per-connection read buffer (READ_BUFFER_SIZE). A non-multi-get line
    /// longer than this can never be seen whole by memcached, which closes; the parser
    /// closes too, whatever the caller's buffer holds.
    public static let readBufferSize = 16384
    /// memcached skips at most this many leading spaces when looking for `get `.
    public static let maxLeadingSpaces = 100
    /// MFLAG_MAX_OPT_LENGTH: meta lines with more tokens (memcached's count,
    /// including its terminal token) are refused.
    public static let maxMetaTokens = 20
    /// MFLAG_MAX_OPAQUE_LENGTH: the longest `O` token, `O` included.
    public static let maxOpaqueTokenLength = 32
}

/// Parses memcached text and meta requests at the front of a buffer, byte-exact with
/// memcached 1.6.18 (the replies it implies are the ones the binary sends).
///
/// A plain value: create one per connection or share one; `parse` has no side
/// effects and may be called from any thread.
///
/// Deliberate differences from memcached, all on malformed input:
/// - The binary protocol's first byte (0x80 on a new connection, where memcached
///   `-B auto` would switch protocols) is the connection's business, not the
///   parser's: later in a text stream such a line is an unknown command (`ERROR`).
/// - memcached closes when more than 2048 bytes arrive without `\n`, so a 3000-byte
///   non-get line (e.g. `gat` with many keys) works only if it arrives in one read.
///   The parser applies the rule to what the caller has buffered, so it behaves like
///   memcached reading the same bytes at once; lines over 16384 bytes (memcached's
///   read buffer) are always closed, except get/gets.
/// - Side effects memcached performs before an error (a multi-get touching and
///   counting the keys before an over-long one; `mg` applying `T` before finding its
///   opaque too long; `flush_all abc` counting in `cmd_flush`) do not happen: the
///   request is refused as a whole.
///
/// Commands memcached 1.6.18's release build does not know are unknown here too:
/// `misbehave` and `debugtime` (debug builds), `extstore` (extstore builds) answer
/// `ERROR`, so `Command.misbehave` is never produced. `refresh_certs` is
/// `Command.refreshCerts`: whoever serves it answers `OK`, or `Error TLS not
/// enabled` (`.tlsNotEnabled`) without TLS, as memcached does.
public struct RequestParser: Sendable {
    public let limits: RequestLimits

    public init(limits: RequestLimits = RequestLimits()) {
        self.limits = limits
    }

    /// Looks at the front of `bytes` (a connection's unconsumed input) and returns
    /// one outcome. Offsets in the outcome are relative to `bytes.baseAddress`.
    public func parse(_ bytes: UnsafeRawBufferPointer) -> ParseOutcome {
        var request = Request(command: .get)
        switch parse(bytes, into: &request) {
        case .request: return .request(request)
        case .needMoreData(let totalLength): return .needMoreData(totalLength: totalLength)
        case .invalid(let error, let consume, let swallow, let quiet):
            return .invalid(error, consume: consume, swallow: swallow, quiet: quiet)
        case .tooLarge(let consume, let swallow): return .tooLarge(request, consume: consume, swallow: swallow)
        case .close: return .close
        case .lineTooLong: return .lineTooLong
        }
    }

    /// The same as `parse(_:)`, but the request (for `.request` and `.tooLarge`) is
    /// written into `request` instead of travelling inside the outcome: a `Request` is
    /// ~250 bytes and Swift copies enum payloads with memcpy, so a hot loop that reuses
    /// one `Request` saves a few copies per request. `request` is overwritten
    /// entirely when the status is `.request` or `.tooLarge` and left unspecified
    /// otherwise.
    public func parse(_ bytes: UnsafeRawBufferPointer, into request: inout Request) -> ParseStatus {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return .needMoreData(totalLength: nil) }
        return parse(base, bytes.count, &request)
    }
}

/// `RequestParser.parse(_:into:)`'s answer: `ParseOutcome` without the request,
/// which the parser wrote into the caller's `Request`.
public enum ParseStatus: Sendable, Equatable {
    /// The request is complete: consume `request.length` bytes.
    case request
    /// See `ParseOutcome.needMoreData`.
    case needMoreData(totalLength: Int?)
    /// See `ParseOutcome.invalid`.
    case invalid(ProtocolError, consume: Int, swallow: Int, quiet: Bool)
    /// See `ParseOutcome.tooLarge`; the request holds command, key, noreply and flags.
    case tooLarge(consume: Int, swallow: Int)
    /// See `ParseOutcome.close`.
    case close
    /// See `ParseOutcome.lineTooLong`.
    case lineTooLong
}

/// One framed command line inside the buffer.
struct Line {
    let base: UnsafeRawPointer
    /// Bytes available in the buffer.
    let available: Int
    /// Line length including `\n`.
    let length: Int
    /// End of the line content (before `\r\n` or `\n`).
    let contentEnd: Int
    /// Where memcached's C string ends: `contentEnd`, or an earlier NUL byte.
    let end: Int
}

extension RequestParser {
    @inline(__always)
    func parse(_ base: UnsafeRawPointer, _ available: Int, _ request: inout Request) -> ParseStatus {
        // Safe because memchr reads only the `available` bytes the caller lent us.
        guard let newlinePointer = memchr(base, 0x0A, available) else {
            if available > Framing.lineWithoutNewlineLimit && !RequestParser.startsLikeMultiGet(base, available) {
                return .close
            }
            if available > limits.maxLineLength { return .lineTooLong }
            return .needMoreData(totalLength: nil)
        }
        let newline = UnsafeRawPointer(newlinePointer) - base
        if newline + 1 > Framing.readBufferSize && !RequestParser.startsLikeMultiGet(base, available) {
            return .close
        }
        if newline > limits.maxLineLength { return .lineTooLong }
        var contentEnd = newline
        // memcached strips the '\r' only when the line has more than one byte.
        if contentEnd > 1 && base.byte(contentEnd - 1) == 0x0D { contentEnd -= 1 }
        var end = contentEnd
        // memcached tokenizes a C string: a NUL byte ends the command early.
        if contentEnd > 0, let nul = memchr(base, 0, contentEnd) { end = UnsafeRawPointer(nul) - base }
        let line = Line(base: base, available: available, length: newline + 1, contentEnd: contentEnd, end: end)
        return LineTokens.withStorage { storage in
            let tokens = LineTokens(storage, base, from: 0, to: end)
            // All commands need a token, and none is shorter than two bytes.
            if tokens.count == 0 || tokens.length(0) < 2 { return error(line) }
            return dispatch(line, tokens, &request)
        }
    }

    /// memcached's guard for long lines: after at most 100 spaces, `get ` or `gets `.
    static func startsLikeMultiGet(_ base: UnsafeRawPointer, _ available: Int) -> Bool {
        var index = 0
        while index < available && base.byte(index) == 0x20 {
            index += 1
            if index > Framing.maxLeadingSpaces { return false }
        }
        if index + 4 <= available && base.matches(index, 4, "get ") { return true }
        if index + 5 <= available && base.matches(index, 5, "gets ") { return true }
        return false
    }

    // MARK: - Dispatch

    /// Mirrors `process_command_ascii`: two-letter `m?` commands are meta; commands
    /// starting with g s a c i d t are looked up in their branch (an unknown one there
    /// is `ERROR`); all others go through a chain whose unknown end closes the
    /// connection when the last token starts with `HTTP/`.
    @inline(__always)
    func dispatch(_ line: Line, _ tokens: LineTokens, _ request: inout Request) -> ParseStatus {
        let base = line.base
        let start = tokens.starts[0]
        let length = tokens.length(0)
        let first = base.byte(start)
        if first == UInt8(ascii: "m") && length == 2 {
            switch base.byte(start + 1) {
            case UInt8(ascii: "g"): return metaCommand(.metaGet, line, tokens, &request)
            case UInt8(ascii: "s"): return metaCommand(.metaSet, line, tokens, &request)
            case UInt8(ascii: "d"): return metaCommand(.metaDelete, line, tokens, &request)
            case UInt8(ascii: "a"): return metaCommand(.metaArithmetic, line, tokens, &request)
            case UInt8(ascii: "n"): return simple(.metaNoop, line, &request)
            case UInt8(ascii: "e"): return metaDebug(line, tokens, &request)
            default: return error(line)
            }
        }
        let name = start + 8 <= line.available
            ? CommandName.packWord(base, start, length) : CommandName.pack(base, start, length)
        switch first {
        case UInt8(ascii: "g"):
            guard tokens.ntokens >= 3 else { return error(line) }
            switch name {
            case CommandName.get: return retrieval(.get, line, tokens, &request)
            case CommandName.gets: return retrieval(.gets, line, tokens, &request)
            case CommandName.gat: return retrieval(.gat, line, tokens, &request)
            case CommandName.gats: return retrieval(.gats, line, tokens, &request)
            default: return error(line)
            }
        case UInt8(ascii: "s"):
            switch name {
            case CommandName.set: return storage(.set, line, tokens, &request)
            case CommandName.stats: return withArguments(.stats, line, tokens, &request)
            case CommandName.shutdown: return withArguments(.shutdown, line, tokens, &request)
            case CommandName.slabs: return withArguments(.slabs, line, tokens, &request)
            default: return error(line)
            }
        case UInt8(ascii: "a"):
            switch name {
            case CommandName.add: return storage(.add, line, tokens, &request)
            case CommandName.append: return storage(.append, line, tokens, &request)
            default: return error(line)
            }
        case UInt8(ascii: "c"):
            if name == CommandName.cas { return storage(.cas, line, tokens, &request) }
            if base.matches(start, length, "cache_memlimit") { return cacheMemlimit(line, tokens, &request) }
            return error(line)
        case UInt8(ascii: "i"):
            return name == CommandName.incr ? arithmetic(.incr, line, tokens, &request) : error(line)
        case UInt8(ascii: "d"):
            switch name {
            case CommandName.delete: return delete(line, tokens, &request)
            case CommandName.decr: return arithmetic(.decr, line, tokens, &request)
            default: return error(line)
            }
        case UInt8(ascii: "t"):
            return name == CommandName.touch ? touch(line, tokens, &request) : error(line)
        default:
            break
        }
        switch name {
        case CommandName.bget:
            return tokens.ntokens >= 3 ? retrieval(.get, line, tokens, &request) : error(line)
        case CommandName.replace: return storage(.replace, line, tokens, &request)
        case CommandName.prepend: return storage(.prepend, line, tokens, &request)
        case CommandName.version: return simple(.version, line, &request)
        case CommandName.quit: return simple(.quit, line, &request)
        case CommandName.watch: return withArguments(.watch, line, tokens, &request)
        case CommandName.lru:
            return tokens.ntokens >= 3 ? withArguments(.lru, line, tokens, &request) : error(line)
        default: break
        }
        if base.matches(start, length, "flush_all") { return flushAll(line, tokens, &request) }
        if base.matches(start, length, "verbosity") { return verbosity(line, tokens, &request) }
        if base.matches(start, length, "lru_crawler") { return withArguments(.lruCrawler, line, tokens, &request) }
        if base.matches(start, length, "refresh_certs") { return simple(.refreshCerts, line, &request) }
        // Unknown (`misbehave` too: it exists only in debug builds of memcached).
        let last = tokens.count - 1
        if tokens.length(last) >= 5 && base.matches(tokens.starts[last], 5, "HTTP/") { return .close }
        return error(line)
    }

    // MARK: - Outcome helpers

    @inline(__always)
    func error(_ line: Line) -> ParseStatus {
        .invalid(.error, consume: line.length, swallow: 0, quiet: false)
    }

    @inline(__always)
    func invalid(_ error: ProtocolError, _ line: Line, quiet: Bool = false, swallow: Int = 0) -> ParseStatus {
        .invalid(error, consume: line.length, swallow: swallow, quiet: quiet)
    }

    /// Starts `request` afresh for `command` on `line`.
    @inline(__always)
    func begin(_ request: inout Request, _ command: Command, _ line: Line) {
        request.reset(command)
        request.length = line.length
        request.line = 0..<line.contentEnd
    }

    func simple(_ command: Command, _ line: Line, _ request: inout Request) -> ParseStatus {
        begin(&request, command, line)
        request.arguments = line.end..<line.end
        return .request
    }

    /// memcached's `set_noreply_maybe`: the last token is exactly `noreply`.
    @inline(__always)
    func isNoreply(_ line: Line, _ tokens: LineTokens) -> Bool {
        let last = tokens.count - 1
        return line.base.matches(tokens.starts[last], tokens.length(last), "noreply")
    }

    /// From the second token to the end of the last one.
    func argumentsRange(_ line: Line, _ tokens: LineTokens) -> Range<Int> {
        if tokens.count < 2 { return line.end..<line.end }
        var end = line.end
        while end > tokens.starts[1] && line.base.byte(end - 1) == 0x20 { end -= 1 }
        return tokens.starts[1]..<end
    }

    func withArguments(_ command: Command, _ line: Line, _ tokens: LineTokens, _ request: inout Request) -> ParseStatus {
        begin(&request, command, line)
        request.arguments = argumentsRange(line, tokens)
        return .request
    }

    /// Waits for `<valueLength>\r\n` after the line; checks the `\r\n`.
    @inline(__always)
    func dataBlock(_ request: inout Request, _ line: Line, valueLength: Int, quiet: Bool) -> ParseStatus {
        let total = line.length + valueLength + 2
        if line.available < total { return .needMoreData(totalLength: total) }
        if line.base.byte(total - 2) != 0x0D || line.base.byte(total - 1) != 0x0A {
            // memcached reads exactly <bytes>+2 and goes on after them.
            return .invalid(.badDataChunk, consume: total, swallow: 0, quiet: quiet)
        }
        request.data = line.length..<(line.length + valueLength)
        request.length = total
        return .request
    }
}

/// The first token packed little-endian into a UInt64 (names of at most 8 bytes),
/// so dispatch compares integers instead of strings. Longer names compare bytes.
enum CommandName {
    @inline(__always)
    static func pack(_ base: UnsafeRawPointer, _ start: Int, _ length: Int) -> UInt64 {
        if length > 8 { return 0 }
        var value: UInt64 = 0
        var index = length
        while index > 0 {
            index -= 1
            value = value << 8 | UInt64(base.byte(start + index))
        }
        return value
    }

    /// `pack` with one unaligned load, when 8 bytes from `start` are readable.
    @inline(__always)
    static func packWord(_ base: UnsafeRawPointer, _ start: Int, _ length: Int) -> UInt64 {
        if length > 8 { return 0 }
        // Safe because the caller checked that start + 8 is within the buffer.
        let word = base.loadUnaligned(fromByteOffset: start, as: UInt64.self).littleEndian
        return length == 8 ? word : word & ((1 << UInt64(length * 8)) - 1)
    }

    // Checked against `pack` of the spelled-out names in CommandNameTests.
    static let get: UInt64 = 0x74_65_67
    static let gets: UInt64 = 0x73_74_65_67
    static let gat: UInt64 = 0x74_61_67
    static let gats: UInt64 = 0x73_74_61_67
    static let bget: UInt64 = 0x74_65_67_62
    static let set: UInt64 = 0x74_65_73
    static let add: UInt64 = 0x64_64_61
    static let append: UInt64 = 0x64_6E_65_70_70_61
    static let replace: UInt64 = 0x65_63_61_6C_70_65_72
    static let prepend: UInt64 = 0x64_6E_65_70_65_72_70
    static let cas: UInt64 = 0x73_61_63
    static let delete: UInt64 = 0x65_74_65_6C_65_64
    static let incr: UInt64 = 0x72_63_6E_69
    static let decr: UInt64 = 0x72_63_65_64
    static let touch: UInt64 = 0x68_63_75_6F_74
    static let stats: UInt64 = 0x73_74_61_74_73
    static let shutdown: UInt64 = 0x6E_77_6F_64_74_75_68_73
    static let slabs: UInt64 = 0x73_62_61_6C_73
    static let version: UInt64 = 0x6E_6F_69_73_72_65_76
    static let quit: UInt64 = 0x74_69_75_71
    static let watch: UInt64 = 0x68_63_74_61_77
    static let lru: UInt64 = 0x75_72_6C
}
