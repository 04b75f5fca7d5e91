public struct StorageConfiguration: Sendable {
    /// Hard budget for item memory in bytes (`-m`).
    public var memoryLimit: Int
    /// Largest item accepted (`-I`), in bytes.
    public var itemSizeMax: Int
    /// `-M` turns evictions off: a full cache refuses new items instead.
    public var evictionsEnabled: Bool
    /// `-C` turns CAS off: items keep no CAS unique (it reads as 0).
    public var casEnabled: Bool
    /// Parts the store is split into, each with its own lock (a power of two,
    /// 1...64). A small budget gets fewer, so that every shard holds at least
    /// four segments.
    public var shardCount: Int
    /// Initial hash buckets over all shards, as a power of two (memcached's
    /// `-o hashpower`, default 16); each shard gets at least 64. Tables grow by
    /// themselves, so this only saves the early doublings.
    public var hashPower: Int

    public init(memoryLimit: Int = 64 << 20, itemSizeMax: Int = 1 << 20, evictionsEnabled: Bool = true, casEnabled: Bool = true,
                shardCount: Int = 8, hashPower: Int = 16) {
        self.memoryLimit = memoryLimit
        self.itemSizeMax = itemSizeMax
        self.evictionsEnabled = evictionsEnabled
        self.casEnabled = casEnabled
        self.shardCount = shardCount
        self.hashPower = hashPower
    }
}
