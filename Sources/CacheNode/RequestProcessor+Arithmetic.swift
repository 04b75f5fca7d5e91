import Buffers
import CacheStorage
import MemcacheProtocol

/// What an incr/decr did (memcached's delta_result_type).
enum DeltaOutcome {
    case updated(value: UInt64, item: ItemRef)
    case notFound
    case nonNumeric
    case casMismatch
    case outOfMemory
}

extension RequestProcessor {
    // incr|decr <key> <delta> [noreply] -> <new value> | NOT_FOUND
    func arithmetic(_ request: Request, in bytes: UnsafeRawBufferPointer, output: inout ByteBuffer) {
        let key = slice(bytes, request.key)
        let hash = ItemStore.hash(key)
        let increment = request.command == .incr
        let now = clock.now
        let outcome = storage.withShard(hash: hash) { shard -> DeltaOutcome in
            applyDelta(&shard, key: key, hash: hash, increment: increment, delta: request.delta, compareCas: 0, now: now)
        }
        switch outcome {
        case .updated(let value, _):
            if !request.noreply {
                output.appendDecimal(value)
                output.append("\r\n")
            }
        case .notFound:
            counters.add(increment ? .incrMisses : .decrMisses)
            reply("NOT_FOUND\r\n", noreply: request.noreply, output: &output)
        case .nonNumeric:
            if !request.noreply { replyError(.nonNumericValue, output: &output) }
        case .casMismatch:
            reply("EXISTS\r\n", noreply: request.noreply, output: &output)
        case .outOfMemory:
            output.append("SERVER_ERROR out of memory\r\n")
        }
    }

    /// memcached's do_add_delta under the shard lock: parse the stored number, add
    /// or subtract (incr wraps at 2^64, decr stops at 0), and write it back in
    /// place, space-padded, when it fits, else into a new item.
    func applyDelta(_ shard: inout LockedShard, key: UnsafeRawBufferPointer, hash: UInt64, increment: Bool,
                    delta: UInt64, compareCas: UInt64, now: ServerTime) -> DeltaOutcome {
        guard case .hit(let item) = lookupCounting(&shard, key: key, hash: hash, now: now, bump: false, fetch: false) else {
            return .notFound
        }
        if item.value.count == 0 { return .nonNumeric }
        if compareCas != 0 && item.cas != compareCas { return .casMismatch }
        guard let current = StoredNumber.parse(UnsafeRawBufferPointer(item.value)) else { return .nonNumeric }
        let value: UInt64
        if increment {
            value = current &+ delta
        } else {
            value = delta > current ? 0 : current - delta
        }
        counters.add(increment ? .incrHits : .decrHits)
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        let length = withUnsafeMutableBytes(of: &digits) { DecimalFormatter.write(value, to: $0.baseAddress!) }
        if length <= item.value.count {
            withUnsafeBytes(of: &digits) { item.value.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: length) }
            for index in length..<item.value.count { item.value[index] = UInt8(ascii: " ") }
            _ = shard.assignNewCas(item)
            return .updated(value: value, item: item)
        }
        let allocation = shard.allocate(key: key, valueLength: length, clientFlags: item.clientFlags,
                                        expiry: item.expiry, now: now, preserving: item)
        guard case .success(let grown) = allocation else { return .outOfMemory }
        withUnsafeBytes(of: &digits) { grown.value.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: length) }
        shard.link(grown, hash: hash, now: now)
        return .updated(value: value, item: grown)
    }
}

/// The number held in an item, read the way memcached's `safe_strtoull` reads
/// `<data>\r\n`: leading whitespace, an optional sign, decimal digits, then
/// whitespace or the end. memcached's quirks are kept because clients can see
/// them: "12 abc" reads as 12, and a negative number is refused only when it
/// would not fit a signed 64-bit integer; a value with no digits at all (only
/// white space, say) is not a number.
enum StoredNumber {
    static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || (byte >= 0x09 && byte <= 0x0d)
    }

    static func parse(_ value: UnsafeRawBufferPointer) -> UInt64? {
        // memcached refuses an empty value before parsing.
        guard value.count > 0 else { return nil }
        // The stored data is followed by "\r\n" in memcached; model that terminator.
        func byte(at index: Int) -> UInt8 {
            if index < value.count { return value[index] }
            return index == value.count ? 0x0d : (index == value.count + 1 ? 0x0a : 0)
        }
        var index = 0
        while isSpace(byte(at: index)) { index += 1 }
        var negative = false
        if byte(at: index) == UInt8(ascii: "+") || byte(at: index) == UInt8(ascii: "-") {
            negative = byte(at: index) == UInt8(ascii: "-")
            index += 1
        }
        var result: UInt64 = 0
        var digits = 0
        while case let digit = byte(at: index), digit >= UInt8(ascii: "0") && digit <= UInt8(ascii: "9") {
            let (multiplied, overflowA) = result.multipliedReportingOverflow(by: 10)
            let (added, overflowB) = multiplied.addingReportingOverflow(UInt64(digit - UInt8(ascii: "0")))
            if overflowA || overflowB { return nil }
            result = added
            digits += 1
            index += 1
        }
        // With no digits strtoull leaves its end pointer at the very start,
        // which safe_strtoull refuses.
        guard digits > 0 else { return nil }
        let terminator = byte(at: index)
        guard isSpace(terminator) || terminator == 0 else { return nil }
        if negative { result = 0 &- result }
        if Int64(bitPattern: result) < 0 && value.contains(UInt8(ascii: "-")) { return nil }
        return result
    }
}
