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
