/// A reference to an item, valid only inside the `withShard` closure that produced
/// it, and only until the next `allocate` in that closure (which may evict or move
/// items) unless it was passed there as `preserving`. An item unlinked in the
/// closure stays readable until the closure ends.
///
/// Every accessor loads or stores one header field at its natural alignment.
/// Safe because `header` always points at a record header that is 8-byte
/// aligned (records start at multiples of 8 in a segment, or 16 bytes into a
/// page-aligned mapping) and stays valid for the ref's documented lifetime;
/// the store itself only builds refs from handles found under the shard lock.
public struct ItemRef {
    /// The item's 32-byte header (see ItemLayout); key and value follow it.
    @usableFromInline let header: UnsafeMutableRawPointer

    @inlinable init(header: UnsafeMutableRawPointer) {
        self.header = header
    }

    @inlinable
    public var key: UnsafeRawBufferPointer {
        // Safe because the key bytes follow the header inside the item's record.
        UnsafeRawBufferPointer(start: header + ItemLayout.headerSize, count: keyLength)
    }

    /// The value bytes; writable so a new item can be filled and incr/decr can rewrite in place.
    @inlinable
    public var value: UnsafeMutableRawBufferPointer {
        // Safe because the value bytes follow the key inside the item's record.
        UnsafeMutableRawBufferPointer(start: header + ItemLayout.headerSize + keyLength, count: valueLength)
    }

    @inlinable
    public var clientFlags: UInt32 {
        get { header.load(fromByteOffset: ItemLayout.clientFlagsOffset, as: UInt32.self) }
        nonmutating set { header.storeBytes(of: newValue, toByteOffset: ItemLayout.clientFlagsOffset, as: UInt32.self) }
    }

    /// Absolute server time of expiry, 0 = never.
    @inlinable
    public var expiry: ServerTime {
        get { header.load(fromByteOffset: ItemLayout.expiryOffset, as: UInt32.self) }
        nonmutating set { header.storeBytes(of: newValue, toByteOffset: ItemLayout.expiryOffset, as: UInt32.self) }
    }

    /// CAS unique (0 when CAS is disabled). Setting it (meta `E`) stores the
    /// client's value as is, before `link` (which then keeps it) or after;
    /// see StoreSequence for what that means for flushes.
    @inlinable
    public var cas: UInt64 {
        get { bits.contains(.casHidden) ? 0 : rawCas }
        nonmutating set {
            rawCas = newValue
            bits.insert(.explicitCas)
        }
    }

    /// Server time of the last access (a store, or a read that bumped the item).
    @inlinable
    public var lastAccess: ServerTime {
        header.load(fromByteOffset: ItemLayout.lastAccessOffset, as: UInt32.self)
    }

    /// Has the item been read since it was stored (meta `h`).
    @inlinable
    public var wasFetched: Bool { bits.contains(.fetched) }

    /// Meta protocol: the item is stale (invalidated by `md I` / `ms I`).
    @inlinable
    public var isStale: Bool {
        get { bits.contains(.stale) }
        nonmutating set { if newValue { bits.insert(.stale) } else { bits.remove(.stale) } }
    }

    /// Meta protocol: a recache win token was handed out (`W` sent, later callers get `Z`).
    @inlinable
    public var winTokenSent: Bool {
        get { bits.contains(.winTokenSent) }
        nonmutating set { if newValue { bits.insert(.winTokenSent) } else { bits.remove(.winTokenSent) } }
    }

    /// Meta protocol: the key was sent base64-encoded (`b`), so replies echo it
    /// encoded. Bit 0 of the usage byte; the store never reads it.
    @inlinable
    public var hasBinaryKey: Bool {
        get { usage & 1 != 0 }
        nonmutating set { usage = (usage & ~1) | (newValue ? 1 : 0) }
    }

    /// Reads since the item was written or last kept by an eviction pass,
    /// saturating at 3 (bits 1-2 of the usage byte). See Shard+Eviction.swift.
    @inlinable
    var readCount: UInt8 {
        get { (usage >> 1) & 3 }
        nonmutating set { usage = (usage & ~6) | ((newValue & 3) << 1) }
    }

    @inlinable
    func noteRead() {
        let count = readCount
        if count < 3 { readCount = count + 1 }
    }

    @inlinable
    var usage: UInt8 {
        get { header.load(fromByteOffset: ItemLayout.usageOffset, as: UInt8.self) }
        nonmutating set { header.storeBytes(of: newValue, toByteOffset: ItemLayout.usageOffset, as: UInt8.self) }
    }

    /// Bytes this item takes in memory, for `me` and `stats`: its record in a
    /// segment, or for a large item its page-rounded mapping plus its 32-byte stub.
    public var totalSize: Int {
        if bits.contains(.large) {
            return LargeItem.mappedSize(recordSize: recordSize) + ItemLayout.headerSize
        }
        return recordSize
    }
}

// Raw header fields, for the store's own use.
extension ItemRef {
    @inlinable var bits: ItemBits {
        get { ItemBits(rawValue: header.load(fromByteOffset: ItemLayout.bitsOffset, as: UInt8.self)) }
        nonmutating set { header.storeBytes(of: newValue.rawValue, toByteOffset: ItemLayout.bitsOffset, as: UInt8.self) }
    }

    @inlinable var rawCas: UInt64 {
        get { header.load(fromByteOffset: ItemLayout.casOffset, as: UInt64.self) }
        nonmutating set { header.storeBytes(of: newValue, toByteOffset: ItemLayout.casOffset, as: UInt64.self) }
    }

    @inlinable var keyLength: Int {
        Int(header.load(fromByteOffset: ItemLayout.keyLengthOffset, as: UInt8.self))
    }

    @inlinable var valueLength: Int {
        Int(header.load(fromByteOffset: ItemLayout.valueLengthOffset, as: UInt32.self))
    }

    var kind: RecordKind {
        // A byte that is not a known kind means the segment is corrupt: stop rather than misread it.
        guard let kind = RecordKind(rawValue: header.load(fromByteOffset: ItemLayout.kindOffset, as: UInt8.self)) else {
            preconditionFailure("corrupt record kind at \(header)")
        }
        return kind
    }

    var next: UInt32 {
        get { header.load(fromByteOffset: ItemLayout.nextOffset, as: UInt32.self) }
        nonmutating set { header.storeBytes(of: newValue, toByteOffset: ItemLayout.nextOffset, as: UInt32.self) }
    }

    /// The chain slot holding this record's successor, for splicing.
    var nextSlot: UnsafeMutableRawPointer { header + ItemLayout.nextOffset }

    var lastAccessTime: ServerTime {
        get { lastAccess }
        nonmutating set { header.storeBytes(of: newValue, toByteOffset: ItemLayout.lastAccessOffset, as: UInt32.self) }
    }

    var keyStart: UnsafeMutableRawPointer { header + ItemLayout.headerSize }

    /// Bytes of the record: item, stub or filler.
    var recordSize: Int {
        switch kind {
        case .item: return ItemLayout.recordSize(keyLength: keyLength, valueLength: valueLength)
        case .largeStub: return ItemLayout.headerSize
        case .filler: return valueLength
        }
    }

    /// Writes a fresh header for an unlinked item.
    func initializeHeader(keyLength: Int, valueLength: Int, bits: ItemBits, clientFlags: UInt32, expiry: ServerTime, now: ServerTime) {
        header.storeBytes(of: UInt8(keyLength), toByteOffset: ItemLayout.keyLengthOffset, as: UInt8.self)
        header.storeBytes(of: bits.rawValue, toByteOffset: ItemLayout.bitsOffset, as: UInt8.self)
        header.storeBytes(of: RecordKind.item.rawValue, toByteOffset: ItemLayout.kindOffset, as: UInt8.self)
        header.storeBytes(of: 0, toByteOffset: ItemLayout.usageOffset, as: UInt8.self)
        header.storeBytes(of: UInt32(valueLength), toByteOffset: ItemLayout.valueLengthOffset, as: UInt32.self)
        header.storeBytes(of: 0, toByteOffset: ItemLayout.casOffset, as: UInt64.self)
        header.storeBytes(of: 0, toByteOffset: ItemLayout.nextOffset, as: UInt32.self)
        header.storeBytes(of: expiry, toByteOffset: ItemLayout.expiryOffset, as: UInt32.self)
        header.storeBytes(of: now, toByteOffset: ItemLayout.lastAccessOffset, as: UInt32.self)
        header.storeBytes(of: clientFlags, toByteOffset: ItemLayout.clientFlagsOffset, as: UInt32.self)
    }

    /// Writes a large item's stub: a header-only record whose clientFlags name the slot.
    func initializeStub(slot: UInt32) {
        initializeHeader(keyLength: 0, valueLength: 0, bits: [], clientFlags: slot, expiry: 0, now: 0)
        header.storeBytes(of: RecordKind.largeStub.rawValue, toByteOffset: ItemLayout.kindOffset, as: UInt8.self)
    }

    /// Marks `size` bytes (a multiple of 8, at least 8) starting here as a filler.
    func initializeFiller(size: Int) {
        header.storeBytes(of: 0, toByteOffset: ItemLayout.keyLengthOffset, as: UInt8.self)
        header.storeBytes(of: 0, toByteOffset: ItemLayout.bitsOffset, as: UInt8.self)
        header.storeBytes(of: RecordKind.filler.rawValue, toByteOffset: ItemLayout.kindOffset, as: UInt8.self)
        header.storeBytes(of: UInt32(size), toByteOffset: ItemLayout.valueLengthOffset, as: UInt32.self)
    }

    /// Has the item expired at `now` (expiry 0 never does).
    func isExpired(now: ServerTime) -> Bool {
        let expiry = self.expiry
        return expiry != 0 && expiry <= now
    }
}
