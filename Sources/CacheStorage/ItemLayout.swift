/// Byte layout of a record in a segment (or in a large item's own mapping).
///
/// Every record starts with the same 32-byte header; an item's key and value
/// follow it, and the record is padded to 8 bytes so that handles (offset / 8)
/// can address it. Nothing protocol-specific is stored: no `\r\n`, no formatted
/// suffix, so an item costs `32 + key + value` rounded up to 8.
///
/// ```
///  0  keyLength   UInt8    item: key bytes (<= 255)
///  1  bits        UInt8    ItemBits
///  2  kind        UInt8    RecordKind
///  3  usage       UInt8    bit 0: binary key (protocol); bits 1-2: read count
///  4  valueLength UInt32   filler: the filler's whole size
///  8  cas         UInt64   CAS unique; also the flush sequence (see StoreSequence)
/// 16  next        UInt32   hash-chain next handle (0 = end)
/// 20  expiry      UInt32   absolute server time, 0 = never
/// 24  lastAccess  UInt32   server time of the last store or bumped read
/// 28  clientFlags UInt32   large stub: the large item's slot
/// 32  key, then value, then padding to 8
/// ```
///
/// The kind and a size live in the first 8 bytes so that the smallest gap a
/// compaction can leave (8 bytes, before a pinned item) can be marked as a filler
/// and the segment stays walkable record by record.
@usableFromInline
enum ItemLayout {
    @inlinable static var headerSize: Int { 32 }
    @inlinable static var keyLengthOffset: Int { 0 }
    @inlinable static var bitsOffset: Int { 1 }
    @inlinable static var kindOffset: Int { 2 }
    @inlinable static var usageOffset: Int { 3 }
    @inlinable static var valueLengthOffset: Int { 4 }
    @inlinable static var casOffset: Int { 8 }
    @inlinable static var nextOffset: Int { 16 }
    @inlinable static var expiryOffset: Int { 20 }
    @inlinable static var lastAccessOffset: Int { 24 }
    @inlinable static var clientFlagsOffset: Int { 28 }

    /// Records are 8-byte aligned: handles count 8-byte units.
    static let alignment = 8
    static let maxKeyLength = Int(UInt8.max)

    /// Bytes a record with this key and value takes in a segment.
    @inlinable
    static func recordSize(keyLength: Int, valueLength: Int) -> Int {
        (headerSize + keyLength + valueLength + 7) & ~7
    }
}

/// The header's bit flags.
@usableFromInline
struct ItemBits: OptionSet {
    @usableFromInline var rawValue: UInt8
    @inlinable init(rawValue: UInt8) { self.rawValue = rawValue }

    /// In the hash table (for a large stub: its large item is).
    @inlinable static var linked: ItemBits { ItemBits(rawValue: 1 << 0) }
    /// Read since it was stored (meta `h`, `*_unfetched` counters).
    @inlinable static var fetched: ItemBits { ItemBits(rawValue: 1 << 1) }
    // 1 << 2 is free (it was the CLOCK bit; the read count in byte 3 replaced it).
    @inlinable static var stale: ItemBits { ItemBits(rawValue: 1 << 3) }
    @inlinable static var winTokenSent: ItemBits { ItemBits(rawValue: 1 << 4) }
    /// The item lives in its own mapping (see LargeItem), not in a segment.
    @inlinable static var large: ItemBits { ItemBits(rawValue: 1 << 5) }
    /// CAS is disabled (`-C`): the cas field holds only the internal sequence.
    @inlinable static var casHidden: ItemBits { ItemBits(rawValue: 1 << 6) }
    /// The CAS was set by the client (meta `E`), so it is not a sequence number.
    @inlinable static var explicitCas: ItemBits { ItemBits(rawValue: 1 << 7) }
}

/// What a record in a segment is.
enum RecordKind: UInt8 {
    /// Header, key, value.
    case item = 0
    /// A 32-byte header standing for a large item in the segment's write order,
    /// so large items age and get evicted with the small ones.
    case largeStub = 1
    /// Dead bytes left by a compaction; `valueLength` holds the filler's size.
    case filler = 2
}
