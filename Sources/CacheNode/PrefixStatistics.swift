import Concurrency
import Synchronization

/// memcached's per-prefix statistics (`stats detail on|off|dump`, `-D <char>`).
///
/// A key's prefix is everything before its first delimiter byte (`:` unless
/// `-D` says otherwise); a key without the delimiter has none and is not
/// counted. While detail is on, memcached 1.6.18 counts, per prefix:
///
///   get  every key of get/gets/gat/gats (hit: it was found)
///   set  every set/add/replace/append/prepend/cas whose command line is valid,
///        even when the value then turns out too large or its data block is bad
///   del  every `delete` with a valid command line, found or not
///
/// Meta commands, incr/decr and touch are not counted. `stats detail off` stops
/// counting but keeps the table (`dump` still shows it); `stats reset` empties it.
///
/// `dump` lists prefixes in memcached's order: by bucket of a 256-bucket table
/// indexed by MurmurHash3 of the prefix (memcached's default hash), the newest
/// first within a bucket. A lookup also keeps memcached's comparison: a prefix
/// matches a table entry of its bucket whose first bytes are that prefix
/// (`strncmp(entry, prefix, length)`), so `ab` can be counted under `abc` when
/// both fall in one bucket.
///
/// Unlike memcached's table, this one is bounded: a client can send any number
/// of distinct prefixes, and each would cost memory for the node's lifetime.
/// At most `capacity` prefixes are kept; once full, keys with a new prefix are
/// not counted (prefixes already in the table go on counting) until
/// `stats reset`. Prefixes are at most 249 bytes (keys are at most 250), so the
/// table stays under ~1.2 MiB with the default capacity.
///
/// Thread-safe. When detail is off a worker pays one relaxed atomic load per
/// request (`isEnabled`); when it is on, every counted key takes one lock, as
/// memcached takes its global stats lock.
public final class PrefixStatistics: Sendable {
    /// Most prefixes kept (memcached has no limit).
    public static let defaultCapacity = 4096
    static let bucketCount = 256

    /// The byte that ends a prefix (memcached's `settings.prefix_delimiter`).
    public let delimiter: UInt8
    public let capacity: Int
    private let enabled: Atomic<Bool>
    private let table: Locked<Table>

    struct Entry {
        var prefix: [UInt8]
        var gets: UInt64 = 0
        var hits: UInt64 = 0
        var sets: UInt64 = 0
        var deletes: UInt64 = 0
    }

    struct Table {
        /// Each bucket's entries, oldest first (memcached pushes new ones at the head).
        var buckets: [[Entry]] = Array(repeating: [], count: PrefixStatistics.bucketCount)
        var count = 0
    }

    public init(delimiter: UInt8 = UInt8(ascii: ":"), enabled: Bool = false, capacity: Int = PrefixStatistics.defaultCapacity) {
        self.delimiter = delimiter
        self.capacity = capacity
        self.enabled = Atomic(enabled)
        self.table = Locked(Table())
    }

    /// Whether keys are being counted. The one check on the hot path.
    @inline(__always)
    public var isEnabled: Bool { enabled.load(ordering: .relaxed) }

    /// `stats detail on|off`: starts or stops counting; the table is kept.
    public func setEnabled(_ on: Bool) {
        enabled.store(on, ordering: .relaxed)
    }

    /// Number of prefixes in the table.
    public var prefixCount: Int { table.withLock { $0.count } }

    func recordGet(_ key: UnsafeRawBufferPointer, hit: Bool) {
        record(key) { entry in
            entry.gets &+= 1
            if hit { entry.hits &+= 1 }
        }
    }

    func recordSet(_ key: UnsafeRawBufferPointer) {
        record(key) { $0.sets &+= 1 }
    }

    func recordDelete(_ key: UnsafeRawBufferPointer) {
        record(key) { $0.deletes &+= 1 }
    }

    /// `stats reset`: forgets every prefix.
    public func clear() {
        table.withLock { $0 = Table() }
    }

    /// `stats detail dump`: `PREFIX <prefix> get <n> hit <n> set <n> del <n>\r\n`
    /// per prefix, then `END\r\n`.
    public func dump() -> [UInt8] {
        table.withLock { table in
            var output: [UInt8] = []
            for bucket in table.buckets {
                for entry in bucket.reversed() {
                    output.append(contentsOf: "PREFIX ".utf8)
                    output.append(contentsOf: entry.prefix)
                    output.append(contentsOf: " get \(entry.gets) hit \(entry.hits) set \(entry.sets) del \(entry.deletes)\r\n".utf8)
                }
            }
            output.append(contentsOf: "END\r\n".utf8)
            return output
        }
    }

    /// The length of `key`'s prefix, or nil when the key has none: no delimiter
    /// before the end, or a NUL byte first (memcached reads the key as a C string).
    func prefixLength(of key: UnsafeRawBufferPointer) -> Int? {
        for (index, byte) in key.enumerated() {
            if byte == delimiter { return index }
            if byte == 0 { return nil }
        }
        return nil
    }

    private func record(_ key: UnsafeRawBufferPointer, _ update: (inout Entry) -> Void) {
        guard let length = prefixLength(of: key) else { return }
        let prefix = UnsafeRawBufferPointer(rebasing: key[0..<length])
        let bucket = Int(MurmurHash3.x86_32(prefix) % UInt32(PrefixStatistics.bucketCount))
        table.withLock { table in
            // Newest first, as memcached walks its chain.
            var index = table.buckets[bucket].count - 1
            while index >= 0 {
                let stored = table.buckets[bucket][index].prefix
                if stored.count >= length && stored.withUnsafeBytes({ $0.starts(with: prefix) }) {
                    update(&table.buckets[bucket][index])
                    return
                }
                index -= 1
            }
            guard table.count < capacity else { return }
            var entry = Entry(prefix: Array(prefix))
            update(&entry)
            table.buckets[bucket].append(entry)
            table.count += 1
        }
    }
}

/// MurmurHash3_x86_32 with seed 0: memcached 1.6.18's default `hash()`, used
/// here only to order `stats detail dump` as memcached orders it.
enum MurmurHash3 {
    static func x86_32(_ data: UnsafeRawBufferPointer) -> UInt32 {
        let c1: UInt32 = 0xcc9e_2d51
        let c2: UInt32 = 0x1b87_3593
        var h1: UInt32 = 0
        let blocks = data.count / 4
        for block in 0..<blocks {
            // Little-endian 4-byte blocks, as memcached reads them on x86.
            var k1 = UInt32(data[block * 4]) | UInt32(data[block * 4 + 1]) << 8
                | UInt32(data[block * 4 + 2]) << 16 | UInt32(data[block * 4 + 3]) << 24
            k1 = k1 &* c1
            k1 = k1.rotatedLeft(15)
            k1 = k1 &* c2
            h1 ^= k1
            h1 = h1.rotatedLeft(13)
            h1 = h1 &* 5 &+ 0xe654_6b64
        }
        let tail = blocks * 4
        var k1: UInt32 = 0
        switch data.count & 3 {
        case 3:
            k1 ^= UInt32(data[tail + 2]) << 16
            fallthrough
        case 2:
            k1 ^= UInt32(data[tail + 1]) << 8
            fallthrough
        case 1:
            k1 ^= UInt32(data[tail])
            k1 = k1 &* c1
            k1 = k1.rotatedLeft(15)
            k1 = k1 &* c2
            h1 ^= k1
        default:
            break
        }
        h1 ^= UInt32(truncatingIfNeeded: data.count)
        h1 ^= h1 >> 16
        h1 = h1 &* 0x85eb_ca6b
        h1 ^= h1 >> 13
        h1 = h1 &* 0xc2b2_ae35
        h1 ^= h1 >> 16
        return h1
    }
}

private extension UInt32 {
    @inline(__always)
    func rotatedLeft(_ count: UInt32) -> UInt32 { (self << count) | (self >> (32 - count)) }
}
