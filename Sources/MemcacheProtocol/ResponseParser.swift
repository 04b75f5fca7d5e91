#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// How a memcached server's reply stream becomes responses (for the proxy and the
// load generator):
//
//   backend input buffer ──► ResponseParser.parse(front of buffer)
//        ▲                       │ memchr '\n' → line; strip '\r'
//        │                       │ first word → kind; VALUE / VA wait for the data block
//        └──── consume ◄──────── ResponseOutcome: .response (ranges into the buffer)
//                                 .needMoreData · .malformed
//
// One call frames one unit: a status line, or a VALUE/VA line with its data block.
// A multi-get's reply is several units (VALUE ... VALUE ... END); the caller knows
// from its request when the reply is complete (END, or MN after quiet meta commands).

/// The kind of one reply unit, by its first word.
public enum ResponseKind: UInt8, Sendable, CaseIterable {
    /// `VALUE <key> <flags> <bytes> [<cas>]` and its data block.
    case value
    case end, stored, notStored, exists, notFound, deleted, touched, ok, reset
    /// The decimal result of incr/decr.
    case number
    /// `VERSION <text>`.
    case version
    /// `STAT <name> <value>`.
    case stat
    /// `ERROR`, `ERROR: shutdown not enabled`, `ERROR Too many open connections`.
    case error
    /// `CLIENT_ERROR <message>`.
    case clientError
    /// `SERVER_ERROR <message>`.
    case serverError
    // Meta protocol.
    /// `HD <flags>*`
    case metaHit
    /// `VA <size> <flags>*` and its data block.
    case metaValue
    /// `EN` (1.6.18 appends `O`/`k` return flags).
    case metaMiss
    /// `NF <flags>*`
    case metaNotFound
    /// `NS <flags>*`
    case metaNotStored
    /// `EX <flags>*`
    case metaExists
    /// `MN`
    case metaNoop
    /// `ME <key> <name>=<value>*`
    case metaDebug
    /// Any other line (`ITEM`, `PREFIX`, `BUSY ...`, `MEMLIMIT_TOO_SMALL ...`,
    /// `Error TLS not enabled`, lru_crawler metadump lines, ...): `text` is the line.
    case other
}

/// One reply unit. Ranges are offsets into the parsed buffer.
public struct Response: Sendable {
    public var kind: ResponseKind
    /// Bytes the unit occupies: the line, its line ending, and any data block with its `\r\n`.
    public var length: Int
    /// The line without its line ending.
    public var line: Range<Int>
    /// `VALUE`/`ME`: the key. `STAT`: the statistic's name.
    public var key: Range<Int>
    /// `VALUE`: the client flags.
    public var flags: UInt32
    /// `VALUE` from gets/gats: the CAS unique (nil when the line has none).
    public var casUnique: UInt64?
    /// `VALUE`/`VA`: the value, without its trailing `\r\n`.
    public var data: Range<Int>
    /// `number`: the incr/decr result.
    public var number: UInt64
    /// Free text: `VERSION` and `STAT` values, the message of `ERROR`/`CLIENT_ERROR`/
    /// `SERVER_ERROR`, the fields of `ME`, the whole line for `other`.
    public var text: Range<Int>
    /// Meta return flags (`HD`, `VA`, `EN`, `NF`, `NS`, `EX`): the span of the flag
    /// tokens, empty when there are none. Iterate with `KeyTokens`.
    public var metaFlags: Range<Int>

    public init(kind: ResponseKind) {
        self.kind = kind
        self.length = 0
        self.line = 0..<0
        self.key = 0..<0
        self.flags = 0
        self.casUnique = nil
        self.data = 0..<0
        self.number = 0
        self.text = 0..<0
        self.metaFlags = 0..<0
    }
}

/// What the response parser made of the front of a buffer.
public enum ResponseOutcome: Sendable {
    /// A complete unit: consume `response.length` bytes.
    case response(Response)
    /// Not enough bytes yet; `totalLength`, when known (a data block is pending), is
    /// the size the whole unit will have.
    case needMoreData(totalLength: Int?)
    /// The bytes are not a memcached reply (a VALUE/VA line that does not parse, a
    /// data block not followed by `\r\n`, a line longer than `maxLineLength`): the
    /// stream cannot be framed any more; close the connection.
    case malformed
}

/// Frames memcached text and meta replies at the front of a buffer, in place, without
/// allocating. A plain value; `parse` has no side effects.
public struct ResponseParser: Sendable {
    /// Longest line accepted without a `\n` before the stream counts as malformed.
    public var maxLineLength: Int

    public init(maxLineLength: Int = 8192) {
        self.maxLineLength = maxLineLength
    }

    public func parse(_ bytes: UnsafeRawBufferPointer) -> ResponseOutcome {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return .needMoreData(totalLength: nil) }
        let available = bytes.count
        // Safe because memchr reads only the `available` bytes lent to us.
        guard let newlinePointer = memchr(base, 0x0A, available) else {
            return available > maxLineLength ? .malformed : .needMoreData(totalLength: nil)
        }
        let newline = UnsafeRawPointer(newlinePointer) - base
        if newline > maxLineLength { return .malformed }
        var end = newline
        if end > 0 && base.byte(end - 1) == 0x0D { end -= 1 }
        var response = Response(kind: .other)
        response.length = newline + 1
        response.line = 0..<end
        response.text = end..<end
        response.metaFlags = end..<end

        // The first word: up to the first space.
        var wordEnd = 0
        while wordEnd < end && base.byte(wordEnd) != 0x20 { wordEnd += 1 }
        let rest = wordEnd < end ? wordEnd + 1 : end      // after one separating space
        switch CommandName.pack(base, 0, wordEnd) {
        case ReplyWord.value:
            return value(base, available, rest, end, response)
        case ReplyWord.va:
            return metaValue(base, available, rest, end, response)
        case ReplyWord.end: response.kind = .end
        case ReplyWord.stored: response.kind = .stored
        case ReplyWord.exists: response.kind = .exists
        case ReplyWord.deleted: response.kind = .deleted
        case ReplyWord.touched: response.kind = .touched
        case ReplyWord.ok: response.kind = .ok
        case ReplyWord.reset: response.kind = .reset
        case ReplyWord.version:
            response.kind = .version
            response.text = rest..<end
        case ReplyWord.stat:
            response.kind = .stat
            var nameEnd = rest
            while nameEnd < end && base.byte(nameEnd) != 0x20 { nameEnd += 1 }
            response.key = rest..<nameEnd
            response.text = min(nameEnd + 1, end)..<end
        case ReplyWord.hd: response.kind = .metaHit; response.metaFlags = rest..<end
        case ReplyWord.en: response.kind = .metaMiss; response.metaFlags = rest..<end
        case ReplyWord.nf: response.kind = .metaNotFound; response.metaFlags = rest..<end
        case ReplyWord.ns: response.kind = .metaNotStored; response.metaFlags = rest..<end
        case ReplyWord.ex: response.kind = .metaExists; response.metaFlags = rest..<end
        case ReplyWord.mn: response.kind = .metaNoop
        case ReplyWord.me:
            response.kind = .metaDebug
            var keyEnd = rest
            while keyEnd < end && base.byte(keyEnd) != 0x20 { keyEnd += 1 }
            response.key = rest..<keyEnd
            response.text = min(keyEnd + 1, end)..<end
        default:
            classifyOther(base, wordEnd, end, &response)
        }
        return .response(response)
    }

    /// Long words, error lines (`ERROR: ...` has no space after the word) and numbers.
    func classifyOther(_ base: UnsafeRawPointer, _ wordEnd: Int, _ end: Int, _ response: inout Response) {
        if base.matches(0, wordEnd, "NOT_STORED") { response.kind = .notStored; return }
        if base.matches(0, wordEnd, "NOT_FOUND") { response.kind = .notFound; return }
        if base.matches(0, wordEnd, "CLIENT_ERROR") {
            response.kind = .clientError
            response.text = min(wordEnd + 1, end)..<end
            return
        }
        if base.matches(0, wordEnd, "SERVER_ERROR") {
            response.kind = .serverError
            response.text = min(wordEnd + 1, end)..<end
            return
        }
        if wordEnd >= 5 && base.matches(0, 5, "ERROR") && (wordEnd == 5 || base.byte(5) == UInt8(ascii: ":")) {
            response.kind = .error
            var start = 5
            while start < end && (base.byte(start) == UInt8(ascii: ":") || base.byte(start) == 0x20) { start += 1 }
            response.text = start..<end
            return
        }
        // incr/decr: the whole line is a decimal number.
        if wordEnd == end && wordEnd > 0 && wordEnd <= 20, let number = ResponseParser.decimal(base, 0, end) {
            response.kind = .number
            response.number = number
            return
        }
        response.text = 0..<end
    }

    // VALUE <key> <flags> <bytes> [<cas unique>]\r\n<data>\r\n
    func value(_ base: UnsafeRawPointer, _ available: Int, _ start: Int, _ end: Int, _ header: Response) -> ResponseOutcome {
        var response = header
        response.kind = .value
        var tokens = (key: 0..<0, flags: 0..<0, bytes: 0..<0, cas: 0..<0)
        var index = start
        var count = 0
        while index < end {
            if base.byte(index) == 0x20 { index += 1; continue }
            let tokenStart = index
            while index < end && base.byte(index) != 0x20 { index += 1 }
            switch count {
            case 0: tokens.key = tokenStart..<index
            case 1: tokens.flags = tokenStart..<index
            case 2: tokens.bytes = tokenStart..<index
            case 3: tokens.cas = tokenStart..<index
            default: return .malformed
            }
            count += 1
        }
        guard count >= 3,
              let flags = ResponseParser.decimal(base, tokens.flags.lowerBound, tokens.flags.upperBound),
              flags <= UInt64(UInt32.max),
              let size = ResponseParser.decimal(base, tokens.bytes.lowerBound, tokens.bytes.upperBound),
              size <= UInt64(Int32.max) else { return .malformed }
        if count == 4 {
            guard let cas = ResponseParser.decimal(base, tokens.cas.lowerBound, tokens.cas.upperBound) else { return .malformed }
            response.casUnique = cas
        }
        response.key = tokens.key
        response.flags = UInt32(flags)
        return dataBlock(base, available, Int(size), response)
    }

    // VA <size> <flags>*\r\n<data>\r\n
    func metaValue(_ base: UnsafeRawPointer, _ available: Int, _ start: Int, _ end: Int, _ header: Response) -> ResponseOutcome {
        var response = header
        response.kind = .metaValue
        var sizeEnd = start
        while sizeEnd < end && base.byte(sizeEnd) != 0x20 { sizeEnd += 1 }
        guard let size = ResponseParser.decimal(base, start, sizeEnd), size <= UInt64(Int32.max) else { return .malformed }
        response.metaFlags = min(sizeEnd + 1, end)..<end
        return dataBlock(base, available, Int(size), response)
    }

    func dataBlock(_ base: UnsafeRawPointer, _ available: Int, _ size: Int, _ header: Response) -> ResponseOutcome {
        var response = header
        let lineLength = response.length
        let total = lineLength + size + 2
        if available < total { return .needMoreData(totalLength: total) }
        guard base.byte(total - 2) == 0x0D && base.byte(total - 1) == 0x0A else { return .malformed }
        response.data = lineLength..<(lineLength + size)
        response.length = total
        return .response(response)
    }

    /// Plain decimal digits (what memcached prints), 1...20 of them, fitting UInt64.
    static func decimal(_ base: UnsafeRawPointer, _ start: Int, _ end: Int) -> UInt64? {
        if start >= end || end - start > 20 { return nil }
        var value: UInt64 = 0
        for index in start..<end {
            let digit = base.byte(index) &- UInt8(ascii: "0")
            if digit > 9 { return nil }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(digit))
            if o1 || o2 { return nil }
            value = sum
        }
        return value
    }
}

/// Reply words packed like `CommandName` (checked in ResponseParserTests).
enum ReplyWord {
    static let value: UInt64 = 0x45_55_4C_41_56
    static let end: UInt64 = 0x44_4E_45
    static let stored: UInt64 = 0x44_45_52_4F_54_53
    static let exists: UInt64 = 0x53_54_53_49_58_45
    static let deleted: UInt64 = 0x44_45_54_45_4C_45_44
    static let touched: UInt64 = 0x44_45_48_43_55_4F_54
    static let ok: UInt64 = 0x4B_4F
    static let reset: UInt64 = 0x54_45_53_45_52
    static let version: UInt64 = 0x4E_4F_49_53_52_45_56
    static let stat: UInt64 = 0x54_41_54_53
    static let hd: UInt64 = 0x44_48
    static let va: UInt64 = 0x41_56
    static let en: UInt64 = 0x4E_45
    static let nf: UInt64 = 0x46_4E
    static let ns: UInt64 = 0x53_4E
    static let ex: UInt64 = 0x58_45
    static let mn: UInt64 = 0x4E_4D
    static let me: UInt64 = 0x45_4D
}
