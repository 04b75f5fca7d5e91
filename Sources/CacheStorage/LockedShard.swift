/// One locked part of the store, handed to a `withShard` closure. Only valid
/// inside that closure.
public struct LockedShard {
    /// The shard's `ShardState`, as a raw pointer so this public type need not expose it.
    @usableFromInline let state: UnsafeMutableRawPointer

    @usableFromInline init(state: UnsafeMutableRawPointer) {
        self.state = state
    }

    private var shard: UnsafeMutablePointer<ShardState> {
        // Safe because `state` always comes from ItemStore's typed shard pointers.
        state.assumingMemoryBound(to: ShardState.self)
    }

    /// Finds `key`, applying lazy expiry and flush (both unlink the item).
    /// A hit counts a read (for eviction) and updates its last access
    /// time unless `bump` is false, and marks it fetched unless `fetch` is false.
    /// `hash` must be `ItemStore.hash(key)`.
    public mutating func lookup(key: UnsafeRawBufferPointer, hash: UInt64, now: ServerTime, bump: Bool = true, fetch: Bool = true) -> LookupResult {
        shard.pointee.lookup(key: key, hash: hash, now: now, bump: bump, fetch: fetch)
    }

    /// Allocates an unlinked item holding `key` and room for `valueLength` bytes of
    /// value, with flags, expiry, last access = now. May evict (or fail). Every
    /// `ItemRef` obtained before is invalid afterwards, except `preserving`, which
    /// is neither moved nor evicted (append/prepend/incr copy from it).
    /// An item never linked is dropped when the closure ends.
    public mutating func allocate(key: UnsafeRawBufferPointer, valueLength: Int, clientFlags: UInt32, expiry: ServerTime, now: ServerTime,
                                  preserving: ItemRef? = nil) -> Result<ItemRef, AllocationFailure> {
        shard.pointee.allocate(key: key, valueLength: valueLength, clientFlags: clientFlags, expiry: expiry, now: now, preserving: preserving)
    }

    /// Makes a filled item visible, replacing any item with the same key, and gives
    /// it a new CAS unique (returned; 0 when CAS is disabled). A CAS set on the
    /// item before linking (meta `E`) is kept and returned instead.
    @discardableResult
    public mutating func link(_ item: ItemRef, hash: UInt64, now: ServerTime) -> UInt64 {
        shard.pointee.link(item, hash: hash, now: now)
    }

    /// Removes an item from the table; its memory is reused later (it stays
    /// readable until the closure ends). Unlinking an unlinked item does nothing.
    public mutating func unlink(_ item: ItemRef, hash: UInt64) {
        shard.pointee.unlink(item, hash: hash)
    }

    /// Records a read of `item` after the fact, as a lookup with `bump` and `fetch`
    /// would have: meta commands report `h` and `l` as they were before this access.
    public mutating func recordAccess(_ item: ItemRef, now: ServerTime) {
        item.noteRead()
        item.bits.insert(.fetched)
        item.lastAccessTime = now
    }

    /// Promotes `item` as memcached's do_item_update does for an `add` that
    /// found it: a new last access time, but not a fetch (`h` and `me`'s
    /// `fetch=` stay as they were).
    public mutating func recordUpdate(_ item: ItemRef, now: ServerTime) {
        item.noteRead()
        item.lastAccessTime = now
    }

    /// Gives a linked item a new CAS unique (meta `md I`, in-place incr) and returns it
    /// (0 when CAS is disabled).
    public mutating func assignNewCas(_ item: ItemRef) -> UInt64 {
        shard.pointee.assignNewCas(item)
    }
}
