/// Counters and gauges of the storage, for `stats`.
public struct StorageStatistics: Sendable {
    public var currentItems: Int = 0
    public var totalItems: Int = 0
    /// Bytes used by items (headers, keys, values; for a large item its
    /// page-rounded mapping and its stub).
    public var bytes: Int = 0
    public var memoryLimit: Int = 0
    public var evictions: Int = 0
    /// Items whose memory was reclaimed because they had expired (or were flushed).
    public var reclaimed: Int = 0
    public var expiredUnfetched: Int = 0
    public var evictedUnfetched: Int = 0

    /// Memory charged to the budget: resident segments (held by shards, or free
    /// but not yet discarded) plus large items' mappings. Never above the limit
    /// (except right after the limit shrank, until the shrink has evicted).
    public var residentBytes: Int = 0
    /// The highest `residentBytes` since start or the last reset.
    public var residentBytesPeak: Int = 0
    public var segmentSize: Int = 0
    /// Segments held by shards.
    public var segmentsInUse: Int = 0
    /// Free segments whose pages are still resident (reused first, no charge).
    public var segmentsFreeResident: Int = 0
    /// Bytes in held segments that no live item uses (deleted, overwritten, not yet compacted).
    public var deadBytes: Int = 0
    /// Items stored in their own mapping (records above `largeItemThreshold`).
    public var largeItems: Int = 0
    public var largeItemBytes: Int = 0
    public var largeItemThreshold: Int = 0
    public var hashBuckets: Int = 0
    /// Memory of the hash tables (not charged to the budget, like memcached's).
    public var hashTableBytes: Int = 0
    /// Some shard's hash table is moving into a table twice its size.
    public var hashExpanding = false
    public var shards: Int = 0
    /// Live items copied forward by eviction passes (CLOCK second chances).
    public var itemsRetained: Int = 0
    /// Segments compacted or emptied by eviction passes and the reclaimer.
    public var compactions: Int = 0
    /// Items the background reclaimer unlinked because they had expired or were
    /// flushed (memcached's `crawler_reclaimed`; they count in `reclaimed` too).
    public var crawlerReclaimed: Int = 0
    /// Items the background reclaimer looked at (memcached's `crawler_items_checked`).
    public var crawlerItemsChecked: Int = 0
    /// Virtual address space reserved for segments.
    public var arenaReservedBytes: Int = 0

    public init() {}
}
