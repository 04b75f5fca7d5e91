/// What the store knows about one segment; kept outside the arena so that
/// walking a shard's segment list touches no item memory.
///
/// A segment belongs either to one shard (and is read and written under that
/// shard's lock) or to the pool (under the pool's lock); ownership only moves
/// under both in turn, which orders the accesses.
struct SegmentInfo {
    /// Bytes written from the segment start; records are appended there.
    var writeOffset: UInt32 = 0
    /// Bytes of linked records (items and large stubs); the rest up to
    /// `writeOffset` is dead space a compaction can win back.
    var liveBytes: UInt32 = 0
    /// Neighbours in the owning shard's list for `band`, in write order, or
    /// the next free segment while in the pool; 0 = none (segment 0 is never used).
    var previous: UInt32 = 0
    var next: UInt32 = 0
    /// Changes whenever the segment changes hands, so a saved cursor can tell
    /// that "its" segment is gone.
    var epoch: UInt32 = 0
    /// Owning shard + 1; 0 while in the pool.
    var owner: UInt16 = 0
    /// Which of the owner's two lists holds the segment.
    var band = SizeBand.small
    /// When an eviction pass should come to this segment, on the owner's
    /// clock: the lowest first (docs/eviction.md).
    var passDue: UInt64 = 0
    /// Pads the entry to a 64-byte cache line: the head segments of different
    /// shards are often neighbours in the array, and their write offsets and
    /// live bytes change on every store, so packed entries made stores on
    /// different shards bounce lines between cores.
    var padding: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    var deadBytes: Int { Int(writeOffset) - Int(liveBytes) }
}
