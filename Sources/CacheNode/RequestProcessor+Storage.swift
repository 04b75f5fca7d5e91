import Buffers
import CacheStorage
import MemcacheProtocol

/// How a store treats an existing item (memcached's NREAD_* modes).
enum StoreMode {
    case set, add, replace, append, prepend, cas
}

/// memcached's store_item_type, plus allocation failures.
enum StoreOutcome {
    case stored(cas: UInt64)
    case notStored
    case exists
    case notFound
    case outOfMemory
    case tooLarge
}

/// A store request, independent of the classic or meta syntax that carried it.
struct StoreRequest {
    var mode: StoreMode
    var key: UnsafeRawBufferPointer
    var value: UnsafeRawBufferPointer
    var clientFlags: UInt32
    var expiry: ServerTime
    /// CAS the client compares against (0 = none).
    var compareCas: UInt64 = 0
    /// meta `ms ... I`: a CAS older than the item's stores the value as stale.
    var invalidate = false
    /// meta `b`: the key came base64-encoded and is echoed that way.
    var binaryKey = false
}

extension RequestProcessor {
    // set|add|replace|append|prepend <key> <flags> <exptime> <bytes> [noreply]\r\n<data>\r\n
    // cas <key> <flags> <exptime> <bytes> <cas unique> [noreply]\r\n<data>\r\n
    func storeClassic(_ request: Request, in bytes: UnsafeRawBufferPointer, output: inout ByteBuffer) {
        let mode: StoreMode
        switch request.command {
        case .add: mode = .add
        case .replace: mode = .replace
        case .append: mode = .append
        case .prepend: mode = .prepend
        case .cas: mode = .cas
        default: mode = .set
        }
        let store = StoreRequest(mode: mode, key: slice(bytes, request.key), value: slice(bytes, request.data),
                                 clientFlags: request.flags, expiry: clock.expiry(fromExptime: request.exptime),
                                 compareCas: request.command == .cas ? request.casUnique : 0)
        if prefixes.isEnabled { prefixes.recordSet(store.key) }
        switch self.store(store) {
        case .stored: reply("STORED\r\n", noreply: request.noreply, output: &output)
        case .notStored: reply("NOT_STORED\r\n", noreply: request.noreply, output: &output)
        case .exists: reply("EXISTS\r\n", noreply: request.noreply, output: &output)
        case .notFound: reply("NOT_FOUND\r\n", noreply: request.noreply, output: &output)
        // memcached sends out-of-memory even to noreply clients.
        case .outOfMemory: replyError(.outOfMemoryStoring, output: &output)
        case .tooLarge: if !request.noreply { replyError(.objectTooLarge, output: &output) }
        }
    }

    /// memcached's do_store_item: the whole decision runs under the key's shard lock.
    func store(_ request: StoreRequest) -> StoreOutcome {
        counters.add(.cmdSet)
        let hash = ItemStore.hash(request.key)
        let now = clock.now
        let outcome = storage.withShard(hash: hash) { shard -> StoreOutcome in
            storeLocked(&shard, request, hash: hash, now: now)
        }
        switch outcome {
        case .outOfMemory: counters.add(.storeNoMemory)
        case .tooLarge: counters.add(.storeTooLarge)
        default: break
        }
        return outcome
    }

    private func storeLocked(_ shard: inout LockedShard, _ request: StoreRequest, hash: UInt64, now: ServerTime) -> StoreOutcome {
        let existing: ItemRef?
        if case .hit(let item) = lookupCounting(&shard, key: request.key, hash: hash, now: now, bump: false, fetch: false) {
            existing = item
        } else {
            existing = nil
        }

        guard let old = existing else {
            switch request.mode {
            case .set, .add:
                return writeNewItem(&shard, request, hash: hash, now: now)
            case .cas:
                counters.add(.casMisses)
                return .notFound
            case .replace, .append, .prepend:
                return .notStored
            }
        }

        let casMatches = request.compareCas == old.cas
        let staleAllowed = request.invalidate && request.compareCas != 0 && request.compareCas < old.cas
        switch request.mode {
        case .add:
            // add refuses, but promotes the existing item (without marking it fetched).
            shard.recordUpdate(old, now: now)
            return .notStored
        case .set, .replace:
            return writeNewItem(&shard, request, hash: hash, now: now)
        case .cas:
            if request.compareCas != 0 && casMatches {
                counters.add(.casHits)
                return writeNewItem(&shard, request, hash: hash, now: now)
            }
            if staleAllowed {
                // A late writer's value is kept, but marked stale, with the old TTL
                // and any win token already handed out.
                counters.add(.casHits)
                let oldExpiry = old.expiry
                let tokenSent = old.winTokenSent
                var stale = request
                stale.expiry = oldExpiry
                return writeNewItem(&shard, stale, hash: hash, now: now) { item in
                    item.isStale = true
                    item.winTokenSent = tokenSent
                }
            }
            counters.add(.casBadval)
            return .exists
        case .append, .prepend:
            if request.compareCas != 0 && !casMatches { return .exists }
            let oldLength = old.value.count
            let total = oldLength + request.value.count
            let allocation = shard.allocate(key: request.key, valueLength: total, clientFlags: old.clientFlags,
                                            expiry: old.expiry, now: now, preserving: old)
            // memcached answers NOT_STORED when the combined value cannot be allocated.
            guard case .success(let item) = allocation else { return .notStored }
            // memcached allocates the combined item anew and never marks its key
            // base64, whatever the old item or this request said.
            item.hasBinaryKey = false
            let destination = item.value
            if request.mode == .append {
                destination.baseAddress!.copyMemory(from: old.value.baseAddress!, byteCount: oldLength)
                if request.value.count > 0 {
                    (destination.baseAddress! + oldLength).copyMemory(from: request.value.baseAddress!, byteCount: request.value.count)
                }
            } else {
                if request.value.count > 0 {
                    destination.baseAddress!.copyMemory(from: request.value.baseAddress!, byteCount: request.value.count)
                }
                (destination.baseAddress! + request.value.count).copyMemory(from: old.value.baseAddress!, byteCount: oldLength)
            }
            return .stored(cas: shard.link(item, hash: hash, now: now))
        }
    }

    /// Allocates, fills and links an item for `request` (replacing any old one).
    private func writeNewItem(_ shard: inout LockedShard, _ request: StoreRequest, hash: UInt64, now: ServerTime,
                              adjust: (ItemRef) -> Void = { _ in }) -> StoreOutcome {
        let allocation = shard.allocate(key: request.key, valueLength: request.value.count, clientFlags: request.clientFlags,
                                        expiry: request.expiry, now: now)
        guard case .success(let item) = allocation else { return failure(allocation) }
        item.hasBinaryKey = request.binaryKey
        if request.value.count > 0 {
            item.value.baseAddress!.copyMemory(from: request.value.baseAddress!, byteCount: request.value.count)
        }
        let cas = shard.link(item, hash: hash, now: now)
        adjust(item)
        return .stored(cas: cas)
    }

    private func failure(_ allocation: Result<ItemRef, AllocationFailure>) -> StoreOutcome {
        if case .failure(.tooLarge) = allocation { return .tooLarge }
        return .outOfMemory
    }

    /// A value over the item size limit (the parser already framed it): count it,
    /// answer, and drop the key's old value so a stale one cannot be read (memcached
    /// does this for set and for every ms).
    func rejectTooLarge(_ request: Request, in bytes: UnsafeRawBufferPointer, output: inout ByteBuffer) {
        counters.add(.storeTooLarge)
        // memcached counts a classic store for `stats detail` before it finds the value too large.
        if request.command != .metaSet && prefixes.isEnabled { prefixes.recordSet(slice(bytes, request.key)) }
        if request.command == .set || request.command == .metaSet {
            if let key = request.command == .metaSet ? metaKey(request, in: bytes) : slice(bytes, request.key) {
                let hash = ItemStore.hash(key)
                let now = clock.now
                storage.withShard(hash: hash) { shard in
                    if case .hit(let item) = shard.lookup(key: key, hash: hash, now: now, bump: false, fetch: false) {
                        shard.unlink(item, hash: hash)
                    }
                }
            }
        }
        let quiet = request.command == .metaSet ? false : request.noreply
        if !quiet { replyError(.objectTooLarge, output: &output) }
    }

    // delete <key> [0] [noreply] -> DELETED | NOT_FOUND
    func delete(_ request: Request, in bytes: UnsafeRawBufferPointer, output: inout ByteBuffer) {
        let key = slice(bytes, request.key)
        if prefixes.isEnabled { prefixes.recordDelete(key) }
        let hash = ItemStore.hash(key)
        let now = clock.now
        let deleted = storage.withShard(hash: hash) { shard -> Bool in
            guard case .hit(let item) = lookupCounting(&shard, key: key, hash: hash, now: now, bump: false, fetch: false) else {
                return false
            }
            shard.unlink(item, hash: hash)
            return true
        }
        counters.add(deleted ? .deleteHits : .deleteMisses)
        reply(deleted ? "DELETED\r\n" : "NOT_FOUND\r\n", noreply: request.noreply, output: &output)
    }
}
