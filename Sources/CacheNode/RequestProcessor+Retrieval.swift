import Buffers
import CacheStorage
import MemcacheProtocol

extension RequestProcessor {
    // get|gets <key>+            gat|gats <exptime> <key>+
    // -> (VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n)* END\r\n
    //
    // `resume` is `.none` for a fresh request, else says which key to go on
    // from after a `.suspended`.
    func retrieve(_ request: Request, in bytes: UnsafeRawBufferPointer, output: inout ByteBuffer,
                  outputLimit: Int, resume: inout Resumption) -> Disposition {
        let command = request.command
        let withCas = command == .gets || command == .gats
        let touching = command == .gat || command == .gats
        let newExpiry = touching ? clock.expiry(fromExptime: request.exptime) : 0
        let now = clock.now
        let detail = prefixes.isEnabled
        var start = request.keys.lowerBound
        if case .retrieval(let nextKey) = resume { start = nextKey }
        var keysDone = 0
        for keyRange in KeyTokens(bytes, start..<request.keys.upperBound) {
            // At least one key per call, so a suspended get always moves on.
            if keysDone > 0 && output.readableCount >= outputLimit {
                resume = .retrieval(nextKey: keyRange.lowerBound)
                return .suspended
            }
            keysDone += 1
            let key = slice(bytes, keyRange)
            let hash = ItemStore.hash(key)
            let hit = storage.withShard(hash: hash) { shard -> Bool in
                guard case .hit(let item) = lookupCounting(&shard, key: key, hash: hash, now: now) else { return false }
                if touching { item.expiry = newExpiry }
                appendValueLine(item, withCas: withCas, output: &output)
                output.append(UnsafeRawBufferPointer(item.value))
                output.append("\r\n")
                return true
            }
            if detail { prefixes.recordGet(key, hit: hit) }
            if touching {
                counters.add(.cmdTouch)
                counters.add(hit ? .touchHits : .touchMisses)
            } else {
                counters.add(.cmdGet)
                counters.add(hit ? .getHits : .getMisses)
            }
        }
        resume = .none
        output.append("END\r\n")
        return .proceed
    }

    /// `VALUE <key> <flags> <bytes>[ <cas>]\r\n`
    @inline(__always)
    func appendValueLine(_ item: ItemRef, withCas: Bool, output: inout ByteBuffer) {
        output.append("VALUE ")
        output.append(item.key)
        output.append(byte: UInt8(ascii: " "))
        output.appendDecimal(UInt64(item.clientFlags))
        output.append(byte: UInt8(ascii: " "))
        output.appendDecimal(UInt64(item.value.count))
        if withCas {
            output.append(byte: UInt8(ascii: " "))
            output.appendDecimal(item.cas)
        }
        output.append("\r\n")
    }

    /// A lookup that counts memcached's `get_expired` / `get_flushed` (every lookup
    /// that meets such an item counts, whatever the command).
    @inline(__always)
    func lookupCounting(_ shard: inout LockedShard, key: UnsafeRawBufferPointer, hash: UInt64, now: ServerTime,
                        bump: Bool = true, fetch: Bool = true) -> LookupResult {
        let result = shard.lookup(key: key, hash: hash, now: now, bump: bump, fetch: fetch)
        switch result {
        case .expired: counters.add(.getExpired)
        case .flushed: counters.add(.getFlushed)
        case .hit, .miss: break
        }
        return result
    }

    // touch <key> <exptime> [noreply] -> TOUCHED | NOT_FOUND
    func touch(_ request: Request, in bytes: UnsafeRawBufferPointer, output: inout ByteBuffer) {
        let key = slice(bytes, request.key)
        let hash = ItemStore.hash(key)
        let expiry = clock.expiry(fromExptime: request.exptime)
        let now = clock.now
        let found = storage.withShard(hash: hash) { shard -> Bool in
            guard case .hit(let item) = lookupCounting(&shard, key: key, hash: hash, now: now) else { return false }
            item.expiry = expiry
            return true
        }
        counters.add(.cmdTouch)
        counters.add(found ? .touchHits : .touchMisses)
        reply(found ? "TOUCHED\r\n" : "NOT_FOUND\r\n", noreply: request.noreply, output: &output)
    }
}
