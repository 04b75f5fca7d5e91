#if canImport(Glibc)
import Glibc
#endif

/// Items too big for a segment (record > segment size / 8: 128 KiB with 1 MiB
/// segments) live in their own anonymous mapping.
///
/// malloc with `mallopt(M_MMAP_THRESHOLD)` would have glibc serve them by
/// mmap; calling mmap/munmap directly gives exactly that behaviour (pages
/// back to the kernel on free, no heap fragmentation, page-exact budget
/// accounting) without changing malloc's threshold for the whole process.
///
/// Mapping layout: a 16-byte prefix, then the item record (header, key, value).
/// ```
///  0  slot         UInt32  index in the shard's LargeItemTable
///  4  stubHandle   UInt32  handle of the item's stub record in a segment
///  8  pendingNext  UInt32  next slot + 1 in the shard's pending-free list
/// 12  isPending    UInt8   on that list
/// 16  item record
/// ```
/// The stub is a 32-byte record in the shard's head segment at allocation time,
/// so a large item ages, is retained and is evicted with the segment that holds
/// its stub, like any small item.
///
/// The prefix accessors below load and store fields of a mapping's first 16
/// bytes. Safe because they are only handed items flagged `.large`, whose
/// header sits 16 bytes into a live page-aligned mapping.
enum LargeItem {
    static let prefixSize = 16
    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    static func mappedSize(recordSize: Int) -> Int {
        (prefixSize + recordSize + pageSize - 1) & ~(pageSize - 1)
    }

    /// A fresh zeroed mapping of `bytes` (a multiple of the page size), or nil.
    static func map(_ bytes: Int) -> UnsafeMutableRawPointer? {
        // Safe because this maps fresh anonymous memory that nothing else refers to.
        let address = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let address, address != MAP_FAILED else { return nil }
        return address
    }

    static func unmap(_ block: UnsafeMutableRawPointer, bytes: Int) {
        // Safe because the caller unlinked the item and drops every reference to the block.
        munmap(block, bytes)
    }

    @inline(__always)
    static func item(inBlock block: UnsafeMutableRawPointer) -> ItemRef {
        ItemRef(header: block + prefixSize)
    }

    @inline(__always)
    static func block(of item: ItemRef) -> UnsafeMutableRawPointer {
        item.header - prefixSize
    }

    static func slot(of item: ItemRef) -> UInt32 {
        block(of: item).load(as: UInt32.self)
    }

    static func stubHandle(of item: ItemRef) -> UInt32 {
        block(of: item).load(fromByteOffset: 4, as: UInt32.self)
    }

    static func setStubHandle(of item: ItemRef, _ handle: UInt32) {
        block(of: item).storeBytes(of: handle, toByteOffset: 4, as: UInt32.self)
    }

    static func pendingNext(of item: ItemRef) -> UInt32 {
        block(of: item).load(fromByteOffset: 8, as: UInt32.self)
    }

    static func setPendingNext(of item: ItemRef, _ next: UInt32) {
        block(of: item).storeBytes(of: next, toByteOffset: 8, as: UInt32.self)
    }

    static func isPending(_ item: ItemRef) -> Bool {
        block(of: item).load(fromByteOffset: 12, as: UInt8.self) != 0
    }

    static func setPending(_ item: ItemRef, _ pending: Bool) {
        block(of: item).storeBytes(of: pending ? 1 : 0, toByteOffset: 12, as: UInt8.self)
    }

    static func initializePrefix(block: UnsafeMutableRawPointer, slot: UInt32, stubHandle: UInt32) {
        block.storeBytes(of: slot, as: UInt32.self)
        block.storeBytes(of: stubHandle, toByteOffset: 4, as: UInt32.self)
        block.storeBytes(of: 0, toByteOffset: 8, as: UInt32.self)
        block.storeBytes(of: 0, toByteOffset: 12, as: UInt32.self)
    }
}
