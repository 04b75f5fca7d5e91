#if canImport(Glibc)
import Glibc
#endif

/// A shard's large items by slot: a large item's handle is
/// `Arena.largeHandleBit | slot`, so hash chains stay 4 bytes per link.
///
/// Free slots are chained through `freeNext`. The arrays grow by doubling,
/// the only heap allocation on this path, amortized over many large items.
struct LargeItemTable {
    private(set) var blocks: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    private var freeNext: UnsafeMutablePointer<UInt32>
    private(set) var capacity: Int
    /// First free slot + 1; 0 = none.
    private var freeHead: UInt32 = 0
    private(set) var count = 0
    /// Sum of the mappings' sizes.
    private(set) var mappedBytes = 0

    init(capacity: Int = 16) {
        self.capacity = capacity
        // Safe because both arrays are initialized in full right below and freed once in deallocate().
        blocks = .allocate(capacity: capacity)
        blocks.initialize(repeating: nil, count: capacity)
        freeNext = .allocate(capacity: capacity)
        for slot in 0..<capacity {
            freeNext[slot] = slot + 1 < capacity ? UInt32(slot + 2) : 0
        }
        freeHead = 1
    }

    func deallocate() {
        blocks.deallocate()
        freeNext.deallocate()
    }

    @inline(__always)
    func block(_ slot: Int) -> UnsafeMutableRawPointer {
        // A handle naming an empty slot means a chain is corrupt.
        guard let block = blocks[slot] else { preconditionFailure("empty large item slot \(slot)") }
        return block
    }

    /// Stores a new mapping and returns its slot.
    mutating func insert(_ block: UnsafeMutableRawPointer, mappedSize: Int) -> UInt32 {
        if freeHead == 0 { grow() }
        let slot = Int(freeHead - 1)
        freeHead = freeNext[slot]
        // Safe because the slot came off the free list, so it is inside capacity and empty.
        blocks[slot] = block
        count += 1
        mappedBytes += mappedSize
        return UInt32(slot)
    }

    mutating func remove(_ slot: Int, mappedSize: Int) {
        blocks[slot] = nil
        freeNext[slot] = freeHead
        freeHead = UInt32(slot + 1)
        count -= 1
        mappedBytes -= mappedSize
    }

    private mutating func grow() {
        let newCapacity = capacity * 2
        precondition(newCapacity < Int(Arena.largeHandleBit), "too many large items in one shard")
        // Safe because every element of the new arrays is initialized before use, and the old ones are freed after the move.
        let newBlocks = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: newCapacity)
        // Safe because both ranges are allocated and `capacity` elements of the old one are initialized.
        newBlocks.moveInitialize(from: blocks, count: capacity)
        newBlocks.advanced(by: capacity).initialize(repeating: nil, count: newCapacity - capacity)
        let newFree = UnsafeMutablePointer<UInt32>.allocate(capacity: newCapacity)
        newFree.moveInitialize(from: freeNext, count: capacity)
        for slot in capacity..<newCapacity {
            newFree[slot] = slot + 1 < newCapacity ? UInt32(slot + 2) : 0
        }
        blocks.deallocate()
        freeNext.deallocate()
        blocks = newBlocks
        freeNext = newFree
        freeHead = UInt32(capacity + 1)
        capacity = newCapacity
    }
}
