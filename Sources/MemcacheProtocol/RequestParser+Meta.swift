// The meta commands of memcached 1.6.18 (`mg ms md ma mn me`), in the order the
// binary checks things. Meta errors are never quiet (`out_errstring` clears noreply).
//
// Flag validation follows `_meta_flag_preparse`, shared by mg/ms/md/ma, which
// accepts the same set of letters for every command (`mg k F5 C5 M1` is fine; each
// command ignores flags it has no use for):
//   b N T R l O P L k s t c f v h u q F C M J D I
// - a flag byte >= 127, or a repeated one: `duplicate flag`, at once;
// - any other unknown byte: `invalid flag`, at once;
// - a bad token (N T R C: `bad token in command line format`, M not 2 bytes:
//   `incorrect length for M token`, J/D: `invalid numeric initial|delta value`,
//   b: `error decoding key`) is remembered and parsing goes on; the last one wins,
//   except a bad F which only marks the failure (the message stays the command's
//   default, `bad command line format`, unless another bad token set one);
// - md and ma answer every failure of this step with `invalid or duplicate flag`.

extension RequestParser {
    // mg <key> <flag>*\r\n
    // ms <key> <datalen> <flag>*\r\n<data>\r\n
    // md <key> <flag>*\r\n
    // ma <key> <flag>*\r\n
    func metaCommand(_ command: Command, _ line: Line, _ tokens: LineTokens, _ request: inout Request) -> ParseStatus {
        let ntokens = tokens.ntokens
        guard ntokens >= 3 else { return error(line) }
        if tokens.length(1) > limits.maxKeyLength { return invalid(.badCommandLineFormat, line) }
        var firstFlag = 2
        var valueLength = 0
        if command == .metaSet {
            if ntokens == 3 { return invalid(.badCommandLineFormat, line) }
            if ntokens > Framing.maxMetaTokens { return invalid(.metaFlagsTooLong, line) }
            // A bad datalen swallows nothing: the data block is parsed as commands.
            guard let datalen = MemcachedNumber.int32(line.base, tokens.starts[2], tokens.ends[2]),
                  datalen >= 0 && datalen <= Int32.max - 2 else {
                return invalid(.badCommandLineFormat, line)
            }
            valueLength = Int(datalen)
            firstFlag = 3
        } else if ntokens > Framing.maxMetaTokens {
            return invalid(command == .metaGet ? .metaGetFlagsTooLong : .metaFlagsTooLong, line)
        }
        // From here on, an ms error swallows the data block.
        let swallow = command == .metaSet ? valueLength + 2 : 0

        begin(&request, command, line)
        request.key = tokens.range(1)
        if let failure = parseMetaFlags(line, tokens, from: firstFlag, into: &request) {
            let reported: ProtocolError =
                command == .metaDelete || command == .metaArithmetic ? .metaInvalidOrDuplicateFlag : failure
            return invalid(reported, line, swallow: swallow)
        }
        let mode = request.meta.mode
        if command == .metaSet {
            switch mode {
            case 0, UInt8(ascii: "E"), UInt8(ascii: "A"), UInt8(ascii: "P"), UInt8(ascii: "R"), UInt8(ascii: "S"): break
            default: return invalid(.metaSetInvalidMode, line, swallow: swallow)
            }
        } else if command == .metaArithmetic {
            switch mode {
            case 0, UInt8(ascii: "I"), UInt8(ascii: "+"), UInt8(ascii: "D"), UInt8(ascii: "-"): break
            default: return invalid(.metaArithmeticInvalidMode, line, swallow: swallow)
            }
        }
        if request.meta.has(UInt8(ascii: "O")) && request.meta.opaque.count + 1 > Framing.maxOpaqueTokenLength {
            return invalid(.metaOpaqueTooLong, line, swallow: swallow)
        }
        guard command == .metaSet else { return .request }

        let keyLength = request.meta.has(UInt8(ascii: "b")) ? request.meta.decodedKeyLength : request.key.count
        if !limits.itemFits(keyLength: keyLength, flags: request.meta.clientFlags, valueLength: valueLength) {
            request.length = line.length + valueLength + 2
            return .tooLarge(consume: line.length, swallow: swallow)
        }
        // A bad data chunk is reported even with `q`.
        return dataBlock(&request, line, valueLength: valueLength, quiet: false)
    }

    /// `_meta_flag_preparse`: fills `request.meta` (and the classic fields the
    /// tokens map to); returns the error memcached would report, if any.
    func parseMetaFlags(_ line: Line, _ tokens: LineTokens, from firstFlag: Int,
                        into request: inout Request) -> ProtocolError? {
        let base = line.base
        var meta = MetaFlags()
        var seenLow: UInt64 = 0    // bytes 0...63
        var seenHigh: UInt64 = 0   // bytes 64...126
        var failed = false
        var message: ProtocolError? = nil
        var index = firstFlag
        while index < tokens.count {
            let start = tokens.starts[index]
            let end = tokens.ends[index]
            let flag = base.byte(start)
            if flag >= 127 { return .metaDuplicateFlag }
            if flag < 64 {
                if seenLow & (1 << UInt64(flag)) != 0 { return .metaDuplicateFlag }
                seenLow |= 1 << UInt64(flag)
            } else {
                if seenHigh & (1 << UInt64(flag - 64)) != 0 { return .metaDuplicateFlag }
                seenHigh |= 1 << UInt64(flag - 64)
            }
            switch flag {
            case UInt8(ascii: "b"):
                if let length = Base64.decode(base, request.key.lowerBound, request.key.upperBound, into: nil) {
                    meta.decodedKeyLength = length
                } else {
                    failed = true
                    message = .metaKeyDecoding
                }
            case UInt8(ascii: "N"), UInt8(ascii: "T"), UInt8(ascii: "R"):
                if let value = MemcachedNumber.int32(base, start + 1, end) {
                    switch flag {
                    case UInt8(ascii: "N"): meta.vivifyTTL = Int64(value)
                    case UInt8(ascii: "T"): meta.ttl = Int64(value)
                    default: meta.recacheTTL = Int64(value)
                    }
                } else {
                    failed = true
                    message = .metaBadToken
                }
            case UInt8(ascii: "O"):
                meta.opaque = (start + 1)..<end
            case UInt8(ascii: "l"), UInt8(ascii: "P"), UInt8(ascii: "L"), UInt8(ascii: "k"), UInt8(ascii: "s"),
                 UInt8(ascii: "t"), UInt8(ascii: "c"), UInt8(ascii: "f"), UInt8(ascii: "v"), UInt8(ascii: "h"),
                 UInt8(ascii: "u"), UInt8(ascii: "q"), UInt8(ascii: "I"):
                break
            case UInt8(ascii: "F"):
                if let value = MemcachedNumber.uint32(base, start + 1, end) {
                    meta.clientFlags = value
                } else {
                    failed = true   // memcached sets no message for F
                }
            case UInt8(ascii: "C"):
                if let value = MemcachedNumber.uint64(base, start + 1, end) {
                    meta.compareCas = value
                } else {
                    failed = true
                    message = .metaBadToken
                }
            case UInt8(ascii: "M"):
                if end - start != 2 {
                    failed = true
                    message = .metaIncorrectModeLength
                } else {
                    meta.mode = base.byte(start + 1)
                }
            case UInt8(ascii: "J"):
                if let value = MemcachedNumber.uint64(base, start + 1, end) {
                    meta.initial = value
                } else {
                    failed = true
                    message = .metaInvalidInitial
                }
            case UInt8(ascii: "D"):
                if let value = MemcachedNumber.uint64(base, start + 1, end) {
                    meta.delta = value
                } else {
                    failed = true
                    message = .metaInvalidDelta
                }
            default:
                return .metaInvalidFlag
            }
            meta.present |= MetaFlags.bit(flag)
            index += 1
        }
        if failed { return message ?? .badCommandLineFormat }
        if firstFlag < tokens.count {
            meta.tokens = tokens.starts[firstFlag]..<tokens.ends[tokens.count - 1]
        } else {
            meta.tokens = line.end..<line.end
        }
        request.meta = meta
        // The classic fields, for code that reads them whatever the protocol.
        if meta.has(UInt8(ascii: "T")) { request.exptime = meta.ttl }
        request.flags = meta.clientFlags
        request.casUnique = meta.compareCas
        request.delta = meta.delta
        return nil
    }

    // mn\r\n — handled in dispatch (any tokens after it are ignored).

    // me <key> [b]\r\n   (only a `b` right after the key counts; other tokens are ignored)
    func metaDebug(_ line: Line, _ tokens: LineTokens, _ request: inout Request) -> ParseStatus {
        if tokens.ntokens < 3 || tokens.length(1) > limits.maxKeyLength {
            return invalid(.badCommandLineFormat, line)
        }
        begin(&request, .metaDebug, line)
        request.key = tokens.range(1)
        if tokens.ntokens >= 4 && line.base.matches(tokens.starts[2], tokens.length(2), "b") {
            // memcached reports a bad base64 key here as a bad command line.
            guard let length = Base64.decode(line.base, request.key.lowerBound, request.key.upperBound, into: nil) else {
                return invalid(.badCommandLineFormat, line)
            }
            request.meta.decodedKeyLength = length
            request.meta.present = MetaFlags.bit(UInt8(ascii: "b"))
        }
        if tokens.count > 2 {
            request.meta.tokens = tokens.starts[2]..<tokens.ends[tokens.count - 1]
        } else {
            request.meta.tokens = line.end..<line.end
        }
        return .request
    }
}
