import Buffers
import CacheStorage
import MemcacheProtocol

private let flagT = UInt8(ascii: "T"), flagN = UInt8(ascii: "N"), flagR = UInt8(ascii: "R")
private let flagC = UInt8(ascii: "C"), flagI = UInt8(ascii: "I"), flagO = UInt8(ascii: "O")
private let flagq = UInt8(ascii: "q"), flagu = UInt8(ascii: "u"), flagv = UInt8(ascii: "v")
private let flagb = UInt8(ascii: "b"), flagk = UInt8(ascii: "k"), flags_ = UInt8(ascii: "s")
private let flagt = UInt8(ascii: "t"), flagc = UInt8(ascii: "c"), flagf = UInt8(ascii: "f")
private let flagl = UInt8(ascii: "l"), flagh = UInt8(ascii: "h")

// Meta commands answer `<code> <return flags>\r\n`; return flags follow the order
// the client sent its flags in, so each reply walks the request's flag tokens.
extension RequestProcessor {
    // mg <key> <flags>*
    func metaGet(_ request: Request, in bytes: UnsafeRawBufferPointer, output: inout ByteBuffer) {
        guard let key = metaKey(request, in: bytes) else { return replyError(.metaKeyDecoding, output: &output) }
        let meta = request.meta
        let hash = ItemStore.hash(key)
        let now = clock.now
        let ttlSet = meta.has(flagT)
        let hit = storage.withShard(hash: hash) { shard -> Bool in
            var found: ItemRef?
            var created = false
            if case .hit(let item) = lookupCounting(&shard, key: key, hash: hash, now: now, bump: false, fetch: false) {
                found = item
            } else if meta.has(flagN),
                      case .success(let fresh) = shard.allocate(key: key, valueLength: 0, clientFlags: 0, expiry: 0, now: now) {
                shard.link(fresh, hash: hash, now: now)
                found = fresh
                created = true
            }
            guard let item = found else {
                if !meta.has(flagq) {
                    output.append("EN")
                    appendOpaqueAndKey(meta, key: key, in: bytes, output: &output)
                    output.append("\r\n")
                }
                return false
            }
            if meta.has(flagv) {
                output.append("VA ")
                output.appendDecimal(UInt64(item.value.count))
            } else {
                output.append("HD")
            }
            var won = false
            for token in KeyTokens(bytes, meta.tokens) {
                switch bytes[token.lowerBound] {
                case flagT: item.expiry = clock.expiry(fromExptime: meta.ttl)
                case flagN:
                    if created {
                        item.expiry = clock.expiry(fromExptime: meta.vivifyTTL)
                        won = true
                    }
                case flagR:
                    if !item.winTokenSent && !created && item.expiry != 0
                        && item.expiry < clock.expiry(fromExptime: meta.recacheTTL) {
                        won = true
                    }
                case flags_: appendFlag(flags_, UInt64(item.value.count), output: &output)
                case flagt: appendRemainingTTL(item, now: now, output: &output)
                case flagc: appendFlag(flagc, item.cas, output: &output)
                case flagf: appendFlag(flagf, UInt64(item.clientFlags), output: &output)
                case flagl: appendFlag(flagl, UInt64(now &- item.lastAccess), output: &output)
                case flagh: appendFlag(flagh, item.wasFetched ? 1 : 0, output: &output)
                case flagO: appendToken(token, in: bytes, output: &output)
                case flagk: appendKey(item.key, binary: item.hasBinaryKey, output: &output)
                default: break
                }
            }
            // A token already handed out is reported (Z) instead of a second win.
            if item.winTokenSent { output.append(" Z") }
            if item.isStale {
                output.append(" X")
                if !item.winTokenSent { won = true }
            }
            if won {
                output.append(" W")
                item.winTokenSent = true
            }
            output.append("\r\n")
            if meta.has(flagv) {
                output.append(UnsafeRawBufferPointer(item.value))
                output.append("\r\n")
            }
            // The bump comes last so `h` and `l` describe the access before this one.
            if !meta.has(flagu) { shard.recordAccess(item, now: now) }
            return true
        }
        if ttlSet {
            counters.add(.cmdTouch)
            counters.add(hit ? .touchHits : .touchMisses)
        } else {
            counters.add(.cmdGet)
            counters.add(hit ? .getHits : .getMisses)
        }
    }

    // ms <key> <datalen> <flags>*\r\n<data>\r\n
    func metaSet(_ request: Request, in bytes: UnsafeRawBufferPointer, output: inout ByteBuffer) {
        guard let key = metaKey(request, in: bytes) else { return replyError(.metaKeyDecoding, output: &output) }
        let meta = request.meta
        var mode: StoreMode
        switch meta.mode {
        case UInt8(ascii: "E"): mode = .add
        case UInt8(ascii: "A"): mode = .append
        case UInt8(ascii: "P"): mode = .prepend
        case UInt8(ascii: "R"): mode = .replace
        default: mode = .set
        }
        let hasCas = meta.has(flagC)
        // A CAS turns set and replace into cas; add, append and prepend keep their mode.
        if hasCas && (mode == .set || mode == .replace) { mode = .cas }
        let store = StoreRequest(mode: mode, key: key, value: slice(bytes, request.data), clientFlags: meta.clientFlags,
                                 expiry: meta.has(flagT) ? clock.expiry(fromExptime: meta.ttl) : 0,
                                 compareCas: hasCas ? meta.compareCas : 0,
                                 invalidate: meta.has(flagI) && mode == .cas, binaryKey: meta.has(flagb))
        let outcome = self.store(store)
        var newCas: UInt64 = 0
        switch outcome {
        case .stored(let cas):
            if meta.has(flagq) { return }
            newCas = cas
            output.append("HD")
        case .exists: output.append("EX")
        case .notFound: output.append("NF")
        case .notStored: output.append("NS")
        case .outOfMemory: return replyError(.outOfMemoryStoring, output: &output)
        case .tooLarge: return replyError(.objectTooLarge, output: &output)
        }
        for token in KeyTokens(bytes, meta.tokens) {
            switch bytes[token.lowerBound] {
            case flagO: appendToken(token, in: bytes, output: &output)
            case flagk: appendKey(key, binary: meta.has(flagb), output: &output)
            case flagc: appendFlag(flagc, newCas, output: &output)
            default: break
            }
        }
        output.append("\r\n")
    }

    // md <key> <flags>*
    func metaDelete(_ request: Request, in bytes: UnsafeRawBufferPointer, output: inout ByteBuffer) {
        guard let key = metaKey(request, in: bytes) else { return replyError(.metaKeyDecoding, output: &output) }
        let meta = request.meta
        let hash = ItemStore.hash(key)
        let now = clock.now
        enum Result { case deleted, invalidated, casMismatch, notFound }
        let result = storage.withShard(hash: hash) { shard -> Result in
            guard case .hit(let item) = lookupCounting(&shard, key: key, hash: hash, now: now, bump: false, fetch: false) else {
                return .notFound
            }
            if meta.has(flagC) && item.cas != meta.compareCas { return .casMismatch }
            if meta.has(flagI) {
                // Invalidate: keep the item as stale, with a new CAS, so the next
                // reader wins the right to recache it.
                if meta.has(flagT) { item.expiry = clock.expiry(fromExptime: meta.ttl) }
                item.isStale = true
                item.winTokenSent = false
                _ = shard.assignNewCas(item)
                return .invalidated
            }
            shard.unlink(item, hash: hash)
            return .deleted
        }
        switch result {
        case .deleted:
            counters.add(.deleteHits)
            if meta.has(flagq) { return }
            output.append("HD")
        case .invalidated:
            if meta.has(flagq) { return }
            output.append("HD")
        case .casMismatch:
            counters.add(.deleteMisses)
            output.append("EX")
        case .notFound:
            counters.add(.deleteMisses)
            output.append("NF")
        }
        appendOpaqueAndKey(meta, key: key, in: bytes, output: &output)
        output.append("\r\n")
    }

    // ma <key> <flags>*
    func metaArithmetic(_ request: Request, in bytes: UnsafeRawBufferPointer, output: inout ByteBuffer) {
        guard let key = metaKey(request, in: bytes) else { return replyError(.metaKeyDecoding, output: &output) }
        let meta = request.meta
        let increment = !(meta.mode == UInt8(ascii: "D") || meta.mode == UInt8(ascii: "-"))
        let hash = ItemStore.hash(key)
        let now = clock.now
        storage.withShard(hash: hash) { shard in
            var item: ItemRef?
            var value: UInt64 = 0
            var created = false
            switch applyDelta(&shard, key: key, hash: hash, increment: increment, delta: meta.delta,
                              compareCas: meta.has(flagC) ? meta.compareCas : 0, now: now) {
            case .updated(let newValue, let updated):
                // q hides only the nominal answer to an update.
                if meta.has(flagq) { return }
                item = updated
                value = newValue
            case .notFound:
                if meta.has(flagN), let fresh = vivifyNumber(&shard, key: key, hash: hash, initial: meta.initial, now: now) {
                    item = fresh
                    value = meta.initial
                    created = true
                } else if meta.has(flagN) {
                    return output.append("SERVER_ERROR Out of memory allocating new item\r\n")
                } else {
                    counters.add(increment ? .incrMisses : .decrMisses)
                    output.append("NF")
                }
            case .casMismatch:
                output.append("EX")
            case .nonNumeric:
                return replyError(.nonNumericValue, output: &output)
            case .outOfMemory:
                return output.append("SERVER_ERROR out of memory\r\n")
            }
            guard let item else {
                appendOpaqueAndKey(meta, key: key, in: bytes, output: &output)
                return output.append("\r\n")
            }
            var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
            let length = withUnsafeMutableBytes(of: &digits) { DecimalFormatter.write(value, to: $0.baseAddress!) }
            if meta.has(flagv) {
                output.append("VA ")
                output.appendDecimal(UInt64(length))
            } else {
                output.append("HD")
            }
            for token in KeyTokens(bytes, meta.tokens) {
                switch bytes[token.lowerBound] {
                case flagc: appendFlag(flagc, item.cas, output: &output)
                case flagt: appendRemainingTTL(item, now: now, output: &output)
                case flagT: item.expiry = clock.expiry(fromExptime: meta.ttl)
                case flagN: if created { item.expiry = clock.expiry(fromExptime: meta.vivifyTTL) }
                case flagO: appendToken(token, in: bytes, output: &output)
                case flagk: appendKey(key, binary: meta.has(flagb), output: &output)
                default: break
                }
            }
            if meta.has(flagv) {
                output.append("\r\n")
                withUnsafeBytes(of: &digits) { output.append(UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
            }
            output.append("\r\n")
        }
    }

    /// `ma ... N`: a missing counter is created holding the initial value.
    private func vivifyNumber(_ shard: inout LockedShard, key: UnsafeRawBufferPointer, hash: UInt64, initial: UInt64,
                              now: ServerTime) -> ItemRef? {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        let length = withUnsafeMutableBytes(of: &digits) { DecimalFormatter.write(initial, to: $0.baseAddress!) }
        guard case .success(let item) = shard.allocate(key: key, valueLength: length, clientFlags: 0, expiry: 0, now: now) else {
            return nil
        }
        withUnsafeBytes(of: &digits) { item.value.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: length) }
        shard.link(item, hash: hash, now: now)
        return item
    }

    // me <key> [b] -> ME <key> exp=<s> la=<s> cas=<n> fetch=yes|no cls=<id> size=<n> | EN
    func metaDebug(_ request: Request, in bytes: UnsafeRawBufferPointer, output: inout ByteBuffer) {
        counters.add(.cmdMeta)
        guard let key = metaKey(request, in: bytes) else { return replyError(.badCommandLineFormat, output: &output) }
        let hash = ItemStore.hash(key)
        let now = clock.now
        let found = storage.withShard(hash: hash) { shard -> Bool in
            guard case .hit(let item) = lookupCounting(&shard, key: key, hash: hash, now: now, bump: false, fetch: false) else {
                return false
            }
            output.append("ME ")
            if item.hasBinaryKey {
                output.appendBase64(item.key)
            } else {
                output.append(item.key)
            }
            // memcached prints now - expiry, a negative number for a live item.
            output.append(" exp=")
            output.appendDecimal(item.expiry == 0 ? -1 : Int64(Int32(bitPattern: now &- item.expiry)))
            output.append(" la=")
            output.appendDecimal(UInt64(now &- item.lastAccess))
            output.append(" cas=")
            output.appendDecimal(item.cas)
            output.append(item.wasFetched ? " fetch=yes" : " fetch=no")
            let size = MemcachedItemSize.total(keyLength: item.key.count, valueLength: item.value.count,
                                               clientFlags: item.clientFlags, casEnabled: context.settings.casEnabled)
            output.append(" cls=")
            output.appendDecimal(UInt64(MemcachedItemSize.slabClass(forTotal: size)))
            output.append(" size=")
            output.appendDecimal(UInt64(size))
            output.append("\r\n")
            return true
        }
        if !found { output.append("EN\r\n") }
    }

    // MARK: Return flags

    /// ` <letter><number>`
    @inline(__always)
    func appendFlag(_ letter: UInt8, _ value: UInt64, output: inout ByteBuffer) {
        output.append(byte: UInt8(ascii: " "))
        output.append(byte: letter)
        output.appendDecimal(value)
    }

    /// ` t<seconds left>`, `-1` for an item that never expires. Unsigned like
    /// memcached, so a TTL set in the past by the same request wraps.
    func appendRemainingTTL(_ item: ItemRef, now: ServerTime, output: inout ByteBuffer) {
        if item.expiry == 0 {
            output.append(" t-1")
        } else {
            appendFlag(flagt, UInt64(item.expiry &- now), output: &output)
        }
    }

    /// A request token echoed as sent (` O<opaque>`).
    func appendToken(_ token: Range<Int>, in bytes: UnsafeRawBufferPointer, output: inout ByteBuffer) {
        output.append(byte: UInt8(ascii: " "))
        output.append(slice(bytes, token))
    }

    /// ` k<key>`, base64 with a trailing ` b` for a binary key.
    func appendKey(_ key: UnsafeRawBufferPointer, binary: Bool, output: inout ByteBuffer) {
        output.append(" k")
        if binary {
            output.appendBase64(key)
            output.append(" b")
        } else {
            output.append(key)
        }
    }

    /// The `O` and `k` flags, the only ones echoed on a miss or a refusal.
    func appendOpaqueAndKey(_ meta: MetaFlags, key: UnsafeRawBufferPointer, in bytes: UnsafeRawBufferPointer, output: inout ByteBuffer) {
        for token in KeyTokens(bytes, meta.tokens) {
            switch bytes[token.lowerBound] {
            case flagO: appendToken(token, in: bytes, output: &output)
            case flagk: appendKey(key, binary: meta.has(flagb), output: &output)
            default: break
            }
        }
    }
}

extension ByteBuffer {
    /// Appends the base64 encoding of `bytes` (a binary key echoed by `k`).
    mutating func appendBase64(_ bytes: UnsafeRawBufferPointer) {
        let length = Base64.encodedLength(bytes.count)
        reserveWritable(length)
        commitWritten(Base64.encode(bytes, into: UnsafeMutableRawBufferPointer(rebasing: writableSpace[0..<length])))
    }
}
