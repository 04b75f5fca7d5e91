// API CONTRACT (to be implemented): the storage the node builds its commands on.
// No I/O, no protocol: keys and values are bytes, time is passed in.

/// Whole seconds since the node started (memcached's "rel_time"); the node's clock
/// ticks it. As an expiry, 0 means "never".
public typealias ServerTime = UInt32

public struct StorageConfiguration: Sendable {
    /// Hard budget for item memory in bytes (`-m`).
    public var memoryLimit: Int
    /// Largest item accepted (`-I`), in bytes.
    public var itemSizeMax: Int
    /// `-M` turns evictions off: a full cache refuses new items instead.
    public var evictionsEnabled: Bool
    /// `-C` turns CAS off: items keep no CAS unique (it reads as 0).
    public var casEnabled: Bool

    public init(memoryLimit: Int = 64 << 20, itemSizeMax: Int = 1 << 20, evictionsEnabled: Bool = true, casEnabled: Bool = true) {
        self.memoryLimit = memoryLimit
        self.itemSizeMax = itemSizeMax
        self.evictionsEnabled = evictionsEnabled
        self.casEnabled = casEnabled
    }
}

/// Why an allocation failed.
public enum AllocationFailure: Error, Sendable {
    /// The item can never fit (`itemSizeMax`).
    case tooLarge
    /// No memory could be freed (evictions off, or nothing evictable).
    case outOfMemory
}

/// What a lookup found.
public enum LookupResult {
    case hit(ItemRef)
    case miss
    /// The item had expired; it has been unlinked now (memcached counts `get_expired`).
    case expired
    /// The item was invalidated by flush_all; unlinked now (`get_flushed`).
    case flushed
}

/// Counters and gauges of the storage, for `stats`.
public struct StorageStatistics: Sendable {
    public var currentItems: Int = 0
    public var totalItems: Int = 0
    /// Bytes used by items (headers, keys, values).
    public var bytes: Int = 0
    public var memoryLimit: Int = 0
    public var evictions: Int = 0
    /// Items whose memory was reclaimed because they had expired.
    public var reclaimed: Int = 0
    public var expiredUnfetched: Int = 0
    public var evictedUnfetched: Int = 0
    public init() {}
}

/// A reference to an item, valid only inside the `withShard` closure that produced
/// it, and only until the next `allocate` in that closure (which may evict or move
/// items) unless it was passed there as `preserving`.
public struct ItemRef {
    // Implementation detail: a pointer to the item's header.
    public var key: UnsafeRawBufferPointer { fatalError() }
    /// The value bytes; writable so a new item can be filled and incr/decr can rewrite in place.
    public var value: UnsafeMutableRawBufferPointer { fatalError() }
    public var clientFlags: UInt32 { get { fatalError() } nonmutating set { fatalError() } }
    /// Absolute server time of expiry, 0 = never.
    public var expiry: ServerTime { get { fatalError() } nonmutating set { fatalError() } }
    /// CAS unique (0 when CAS is disabled).
    public var cas: UInt64 { get { fatalError() } nonmutating set { fatalError() } }
    /// Server time of the last access (read or write).
    public var lastAccess: ServerTime { fatalError() }
    /// Has the item been read since it was stored (meta `h`).
    public var wasFetched: Bool { fatalError() }
    /// Meta protocol: the item is stale (invalidated by `md I` / `ms I`).
    public var isStale: Bool { get { fatalError() } nonmutating set { fatalError() } }
    /// Meta protocol: a recache win token was handed out (`W` sent, later callers get `Z`).
    public var winTokenSent: Bool { get { fatalError() } nonmutating set { fatalError() } }
    /// Bytes this item takes in memory, for `me` and `stats`.
    public var totalSize: Int { fatalError() }
}

/// The item store: a hash table with eviction under a hard memory budget.
/// Thread-safe: every method may be called from any thread.
public final class CacheStorage: @unchecked Sendable {
    public let configuration: StorageConfiguration

    public init(configuration: StorageConfiguration) throws {
        self.configuration = configuration
        fatalError("not implemented")
    }

    /// The hash of a key; compute it once per key and pass it to `withShard`.
    public static func hash(_ key: UnsafeRawBufferPointer) -> UInt64 { fatalError() }

    /// Runs `body` with the part of the store that owns keys of this hash locked.
    /// Keep `body` short: it blocks other threads using the same part.
    public func withShard<R>(hash: UInt64, _ body: (inout LockedShard) throws -> R) rethrows -> R { fatalError() }

    /// memcached's flush_all: items last stored or touched at or before `boundary`
    /// become invisible once `now >= boundary` (a delayed flush passes a future boundary).
    public func flush(boundary: ServerTime, now: ServerTime) { fatalError() }

    /// Changes the memory budget (`cache_memlimit`); shrinking evicts down to it.
    public func setMemoryLimit(_ bytes: Int) { fatalError() }

    /// Background reclaim: unlinks up to `limit` expired items and frees their
    /// memory where it can. Returns how many were reclaimed.
    public func reclaimExpired(now: ServerTime, limit: Int) -> Int { fatalError() }

    public func statistics() -> StorageStatistics { fatalError() }
    /// Zeroes counters (not gauges such as current items and bytes), for `stats reset`.
    public func resetStatistics() { fatalError() }
}

/// One locked part of the store, handed to a `withShard` closure.
public struct LockedShard {
    /// Finds `key`, applying lazy expiry and flush (both unlink the item).
    /// A hit marks the item accessed (for eviction) unless `bump` is false, and
    /// fetched unless `fetch` is false (meta `u` sets neither... see the node).
    public mutating func lookup(key: UnsafeRawBufferPointer, hash: UInt64, now: ServerTime, bump: Bool = true, fetch: Bool = true) -> LookupResult { fatalError() }

    /// Allocates an unlinked item holding `key` and room for `valueLength` bytes of
    /// value, with flags, expiry, last access = now. May evict (or fail). Every
    /// `ItemRef` obtained before is invalid afterwards, except `preserving`.
    public mutating func allocate(key: UnsafeRawBufferPointer, valueLength: Int, clientFlags: UInt32, expiry: ServerTime, now: ServerTime, preserving: ItemRef? = nil) -> Result<ItemRef, AllocationFailure> { fatalError() }

    /// Makes a filled item visible, replacing any item with the same key, and gives
    /// it a new CAS unique (returned).
    @discardableResult
    public mutating func link(_ item: ItemRef, hash: UInt64, now: ServerTime) -> UInt64 { fatalError() }

    /// Removes an item from the table; its memory is reused later.
    public mutating func unlink(_ item: ItemRef, hash: UInt64) { fatalError() }

    /// Records a read of `item` after the fact (meta commands report `h` and `l`
    /// as they were before this access): marks it fetched and accessed at `now`.
    public mutating func recordAccess(_ item: ItemRef, now: ServerTime) { fatalError() }

    /// Gives a linked item a new CAS unique (meta `md I`, in-place incr) and returns it.
    public mutating func assignNewCas(_ item: ItemRef) -> UInt64 { fatalError() }
}
