/// memcached 1.6.18's item accounting, reproduced where clients can see it:
/// which values `-I` lets in (the parser), and the size and slab class `me`
/// reports (the node). The node's own storage lays items out differently;
/// these numbers are for compatibility only.
public enum MemcachedItemSize {
    /// memcached's `ITEM_ntotal`: a 48-byte header, 8 bytes of CAS when enabled,
    /// the key and its NUL, 4 bytes of flags when non-zero, the value and `\r\n`.
    @inlinable
    public static func total(keyLength: Int, valueLength: Int, clientFlags: UInt32, casEnabled: Bool) -> Int {
        48 + (casEnabled ? 8 : 0) + keyLength + 1 + (clientFlags == 0 ? 0 : 4) + valueLength + 2
    }

    /// The slab class memcached's default classes give an item: chunk sizes start
    /// at 96 bytes and grow by 1.25 (truncated, then aligned to 8) until half a
    /// 1 MiB page, which is the largest class.
    public static func slabClass(forTotal total: Int) -> Int {
        let largestChunk = (1 << 20) / 2
        var size = 96
        var classID = 1
        while Double(size) < Double(largestChunk) / 1.25 {
            if size % 8 != 0 { size += 8 - size % 8 }
            if total <= size { return classID }
            size = Int(Double(size) * 1.25)
            classID += 1
        }
        return classID
    }
}
