#if canImport(Glibc)
import Glibc
#endif

/// One big anonymous virtual reservation, cut into equal power-of-two segments.
///
/// Reserved with MAP_NORESERVE at start and large enough for the budget to grow
/// later: address space costs nothing until a page is touched. Segment 0 is never
/// handed out so that handle 0 can mean "no item". Items are addressed by 32-bit
/// handles (byte offset / 8), so the arena holds at most 2^31 * 8 = 16 GiB (the
/// top handle bit marks large items); a budget above that is usable by large
/// items only.
final class Arena {
    static let maxBytes = 1 << 34
    /// Handles with this bit refer to a shard's large-item table, not the arena.
    static let largeHandleBit: UInt32 = 1 << 31

    let base: UnsafeMutableRawPointer
    let reservedBytes: Int
    let segmentSize: Int
    let segmentShift: Int
    /// Number of segment slots, including the unused segment 0.
    let segmentCount: Int
    /// Metadata of every segment, indexed by segment number.
    let segments: UnsafeMutablePointer<SegmentInfo>
    private let metadataBytes: Int

    /// Reserves room for `wantedBytes` of segments (more if possible, fewer down
    /// to `minimumBytes` if the kernel refuses), or returns nil.
    init?(segmentSize: Int, wantedBytes: Int, minimumBytes: Int) {
        precondition(segmentSize > 0 && segmentSize & (segmentSize - 1) == 0)
        assert(MemoryLayout<SegmentInfo>.stride == 64, "SegmentInfo should fill one cache line")
        self.segmentSize = segmentSize
        self.segmentShift = segmentSize.trailingZeroBitCount
        var size = min(Arena.maxBytes, wantedBytes + segmentSize) & ~(segmentSize - 1)
        let floor = min(Arena.maxBytes, minimumBytes + segmentSize)
        var mapped: UnsafeMutableRawPointer?
        while mapped == nil {
            // Safe because this maps fresh anonymous memory that nothing else refers to.
            let address = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            if let address, address != MAP_FAILED {
                mapped = address
            } else if size / 2 >= floor {
                size = (size / 2) & ~(segmentSize - 1)
            } else {
                return nil
            }
        }
        // Safe because the loop only ends with a mapping.
        base = mapped!
        reservedBytes = size
        segmentCount = size / segmentSize
        metadataBytes = (segmentCount * MemoryLayout<SegmentInfo>.stride + 4095) & ~4095
        // Anonymous memory again, so that metadata of segments never used costs no RSS either.
        let metadata = mmap(nil, metadataBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let metadata, metadata != MAP_FAILED else {
            // Safe because the reservation was just made and nothing refers to it yet.
            munmap(base, size)
            return nil
        }
        // Safe because zero bytes are a valid SegmentInfo (all fields are integers).
        segments = metadata.bindMemory(to: SegmentInfo.self, capacity: segmentCount)
    }

    deinit {
        // Safe because the store is being torn down: no shard or ItemRef refers to the arena any more.
        munmap(base, reservedBytes)
        munmap(UnsafeMutableRawPointer(segments), metadataBytes)
    }

    @inline(__always)
    func segmentBase(_ segment: UInt32) -> UnsafeMutableRawPointer {
        base + (Int(segment) << segmentShift)
    }

    @inline(__always)
    func segment(ofHandle handle: UInt32) -> UInt32 {
        UInt32(truncatingIfNeeded: (Int(handle) << 3) >> segmentShift)
    }

    /// Hands a segment's pages back to the kernel; they read as zeros if touched again.
    func discard(_ segment: UInt32) {
        // Safe because the segment lies inside the reservation and no record in it is referenced any more.
        madvise(segmentBase(segment), segmentSize, MADV_DONTNEED)
    }

    /// Bytes of the first `segments` segments that are resident, by mincore.
    /// Diagnostic: allocates a vector of one byte per page.
    func residentBytes(segments: Int) -> Int {
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let length = min(segments, segmentCount) * segmentSize
        guard length > 0 else { return 0 }
        var vector = [UInt8](repeating: 0, count: (length + pageSize - 1) / pageSize)
        let status = vector.withUnsafeMutableBufferPointer { buffer in
            // Safe because the range lies inside the reservation and the vector has one byte per page.
            mincore(base, length, buffer.baseAddress)
        }
        guard status == 0 else { return -1 }
        return vector.reduce(0) { $0 + Int($1 & 1) } * pageSize
    }
}
