// The classic text commands, each under its grammar line, in the order memcached
// 1.6.18 checks things (the order decides which error a client sees). "ntokens"
// is memcached's count: real tokens + 1. `quiet` is true for the errors memcached
// sends through `out_string` after `set_noreply_maybe` saw `noreply`.

extension RequestParser {
    // get|gets|bget <key>*\r\n
    // gat|gats <exptime> <key>*\r\n
    // (the caller has checked ntokens >= 3)
    @inline(__always)
    func retrieval(_ command: Command, _ line: Line, _ tokens: LineTokens, _ request: inout Request) -> ParseStatus {
        begin(&request, command, line)
        var firstKey = 1
        if command == .gat || command == .gats {
            guard let exptime = MemcachedNumber.int32(line.base, tokens.starts[1], tokens.ends[1]) else {
                return invalid(.invalidExptime, line)
            }
            request.exptime = Int64(exptime)
            firstKey = 2
        }
        // memcached drops every value it queued when it meets an over-long key and
        // answers only the error, so the whole line is checked before any lookup.
        let maxKey = limits.maxKeyLength
        var index = firstKey
        while index < tokens.count {
            if tokens.length(index) > maxKey { return invalid(.badCommandLineFormat, line) }
            index += 1
        }
        if tokens.scanEnd < line.end && !keysFit(line.base, from: tokens.scanEnd, to: line.end, maxKey) {
            return invalid(.badCommandLineFormat, line)
        }
        if firstKey < tokens.count {
            request.key = tokens.range(firstKey)
            request.keys = tokens.starts[firstKey]..<line.end
        } else {
            // `gat 100` with no key: memcached answers just END.
            request.key = line.end..<line.end
            request.keys = line.end..<line.end
        }
        return .request
    }

    /// Checks the keys beyond the first 23 tokens (memcached re-tokenizes them).
    func keysFit(_ base: UnsafeRawPointer, from start: Int, to end: Int, _ maxKey: Int) -> Bool {
        var index = start
        while index < end {
            while index < end && base.byte(index) == 0x20 { index += 1 }
            let keyStart = index
            index = base.nextSpace(from: index, to: end)
            if index - keyStart > maxKey { return false }
        }
        return true
    }

    // set|add|replace|append|prepend <key> <flags> <exptime> <bytes> [noreply]\r\n<data>\r\n
    // cas <key> <flags> <exptime> <bytes> <cas unique> [noreply]\r\n<data>\r\n
    @inline(__always)
    func storage(_ command: Command, _ line: Line, _ tokens: LineTokens, _ request: inout Request) -> ParseStatus {
        let isCas = command == .cas
        let arity = isCas ? 7 : 6
        guard tokens.ntokens == arity || tokens.ntokens == arity + 1 else { return error(line) }
        let noreply = isNoreply(line, tokens)
        let keyLength = tokens.length(1)
        if keyLength > limits.maxKeyLength { return invalid(.badCommandLineFormat, line, quiet: noreply) }
        let base = line.base
        guard let flags = MemcachedNumber.uint32(base, tokens.starts[2], tokens.ends[2]),
              let exptime = MemcachedNumber.int32(base, tokens.starts[3], tokens.ends[3]),
              let valueLength = MemcachedNumber.int32(base, tokens.starts[4], tokens.ends[4]) else {
            // Nothing is swallowed: the data block will be parsed as commands.
            return invalid(.badCommandLineFormat, line, quiet: noreply)
        }
        var casUnique: UInt64 = 0
        if isCas {
            guard let value = MemcachedNumber.uint64(base, tokens.starts[5], tokens.ends[5]) else {
                return invalid(.badCommandLineFormat, line, quiet: noreply)
            }
            casUnique = value
        }
        guard valueLength >= 0 && valueLength <= Int32.max - 2 else {
            return invalid(.badCommandLineFormat, line, quiet: noreply)
        }
        begin(&request, command, line)
        request.key = tokens.range(1)
        request.flags = flags
        request.exptime = Int64(exptime)
        request.casUnique = casUnique
        request.noreply = noreply
        let bytes = Int(valueLength)
        if !limits.itemFits(keyLength: keyLength, flags: flags, valueLength: bytes) {
            request.length = line.length + bytes + 2
            return .tooLarge(consume: line.length, swallow: bytes + 2)
        }
        return dataBlock(&request, line, valueLength: bytes, quiet: noreply)
    }

    // delete <key> [0] [noreply]\r\n
    func delete(_ line: Line, _ tokens: LineTokens, _ request: inout Request) -> ParseStatus {
        let ntokens = tokens.ntokens
        guard ntokens >= 3 && ntokens <= 5 else { return error(line) }
        var noreply = false
        if ntokens > 3 {
            let holdIsZero = line.base.matches(tokens.starts[2], tokens.length(2), "0")
            noreply = isNoreply(line, tokens)
            let valid = (ntokens == 4 && (holdIsZero || noreply)) || (ntokens == 5 && holdIsZero && noreply)
            if !valid { return invalid(.deleteUsage, line, quiet: noreply) }
        }
        if tokens.length(1) > limits.maxKeyLength { return invalid(.badCommandLineFormat, line, quiet: noreply) }
        begin(&request, .delete, line)
        request.key = tokens.range(1)
        request.noreply = noreply
        return .request
    }

    // incr|decr <key> <delta> [noreply]\r\n   (a 4th token other than noreply is ignored)
    func arithmetic(_ command: Command, _ line: Line, _ tokens: LineTokens, _ request: inout Request) -> ParseStatus {
        guard tokens.ntokens == 4 || tokens.ntokens == 5 else { return error(line) }
        let noreply = isNoreply(line, tokens)
        if tokens.length(1) > limits.maxKeyLength { return invalid(.badCommandLineFormat, line, quiet: noreply) }
        guard let delta = MemcachedNumber.uint64(line.base, tokens.starts[2], tokens.ends[2]) else {
            return invalid(.invalidDelta, line, quiet: noreply)
        }
        begin(&request, command, line)
        request.key = tokens.range(1)
        request.delta = delta
        request.noreply = noreply
        return .request
    }

    // touch <key> <exptime> [noreply]\r\n
    func touch(_ line: Line, _ tokens: LineTokens, _ request: inout Request) -> ParseStatus {
        guard tokens.ntokens == 4 || tokens.ntokens == 5 else { return error(line) }
        let noreply = isNoreply(line, tokens)
        if tokens.length(1) > limits.maxKeyLength { return invalid(.badCommandLineFormat, line, quiet: noreply) }
        guard let exptime = MemcachedNumber.int32(line.base, tokens.starts[2], tokens.ends[2]) else {
            return invalid(.invalidExptime, line, quiet: noreply)
        }
        begin(&request, .touch, line)
        request.key = tokens.range(1)
        request.exptime = Int64(exptime)
        request.noreply = noreply
        return .request
    }

    // flush_all [delay] [noreply]\r\n
    func flushAll(_ line: Line, _ tokens: LineTokens, _ request: inout Request) -> ParseStatus {
        let ntokens = tokens.ntokens
        guard ntokens >= 2 && ntokens <= 4 else { return error(line) }
        let noreply = isNoreply(line, tokens)
        begin(&request, .flushAll, line)
        request.noreply = noreply
        request.arguments = argumentsRange(line, tokens)
        // memcached refuses (-F) before it looks at the delay.
        if limits.flushAllEnabled && ntokens != (noreply ? 3 : 2) {
            // `flush_all noreply 5` parses `noreply` as the delay: invalid.
            guard let delay = MemcachedNumber.int32(line.base, tokens.starts[1], tokens.ends[1]) else {
                return invalid(.invalidExptime, line, quiet: noreply)
            }
            request.exptime = Int64(delay)
        }
        return .request
    }

    // verbosity <level> [noreply]\r\n
    func verbosity(_ line: Line, _ tokens: LineTokens, _ request: inout Request) -> ParseStatus {
        guard tokens.ntokens == 3 || tokens.ntokens == 4 else { return error(line) }
        let noreply = isNoreply(line, tokens)
        guard let level = MemcachedNumber.uint32(line.base, tokens.starts[1], tokens.ends[1]) else {
            return invalid(.badCommandLineFormat, line, quiet: noreply)
        }
        begin(&request, .verbosity, line)
        request.numericArgument = UInt64(level)
        request.noreply = noreply
        request.arguments = argumentsRange(line, tokens)
        return .request
    }

    // cache_memlimit <megabytes> [noreply]\r\n
    // The node answers MEMLIMIT_TOO_SMALL (< 8) / MEMLIMIT_ADJUST_FAILED (> 1e9) / OK.
    func cacheMemlimit(_ line: Line, _ tokens: LineTokens, _ request: inout Request) -> ParseStatus {
        guard tokens.ntokens == 3 || tokens.ntokens == 4 else { return error(line) }
        let noreply = isNoreply(line, tokens)
        guard let megabytes = MemcachedNumber.uint32(line.base, tokens.starts[1], tokens.ends[1]) else {
            // memcached says plain ERROR here (and noreply hides it).
            return invalid(.error, line, quiet: noreply)
        }
        begin(&request, .cacheMemlimit, line)
        request.numericArgument = UInt64(megabytes)
        request.noreply = noreply
        request.arguments = argumentsRange(line, tokens)
        return .request
    }
}
