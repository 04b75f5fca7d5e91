// A walk over every item of the store, a few hash buckets at a time, for
// listings that must neither build the whole list in memory nor hold a lock
// while their reader is slow (the node's `lru_crawler metadump`):
//
//   cursor: (shard, position) ---walk---> shard lock held for a few buckets
//      ^                                     |  body(item) for each live item
//      '------- next position ---------------'  lock released
//
// Positions follow `HashTable.scan`: every item linked for the whole walk is
// visited exactly once, even while tables grow; an item linked or unlinked
// during the walk may or may not be.

/// Where a walk over the store stands. A fresh cursor starts at the first
/// shard; `isFinished` once every shard has been walked.
public struct StoreCursor: Equatable, Sendable {
    var shard = 0
    /// Within `shard`: the next hash class, 0 = the first (see HashTable.scan).
    var position: UInt64 = 0
    public private(set) var isFinished = false

    public init() {}

    mutating func moveTo(next: UInt64, shardCount: Int) {
        if next != 0 {
            position = next
            return
        }
        position = 0
        shard += 1
        isFinished = shard >= shardCount
    }
}

extension ItemStore {
    /// Visits the live items of the next `buckets` hash buckets (or so) of the
    /// walk `cursor` is at, under one shard lock, and moves the cursor past
    /// them. Returns how many items `body` saw.
    ///
    /// Items expired at `now` or hidden by a flush are skipped, as a lookup
    /// would miss them; nothing is changed (no access bit, no lazy unlink).
    /// `body` runs with the shard locked: keep it short, and do not call the
    /// store from it. Its `ItemRef` is valid only during the call.
    @discardableResult
    public func walk(_ cursor: inout StoreCursor, now: ServerTime, buckets: Int = 64, _ body: (ItemRef) -> Void) -> Int {
        guard !cursor.isFinished else { return 0 }
        context.sequence.pointee.applyPendingFlush(now: now)
        let shard = context.shards[cursor.shard]
        shard.pointee.lock.lock()
        let (next, visited) = shard.pointee.walk(from: cursor.position, classes: max(1, buckets), now: now, body)
        shard.pointee.lock.unlock()
        cursor.moveTo(next: next, shardCount: context.shardCount)
        return visited
    }
}

extension ShardState {
    /// Visits the live items of up to `classes` hash classes from `position`.
    /// Returns the next position (0: this shard is done) and the items visited.
    /// The shard lock is held by the caller.
    func walk(from position: UInt64, classes: Int, now: ServerTime, _ body: (ItemRef) -> Void) -> (next: UInt64, visited: Int) {
        var position = position
        var visited = 0
        for _ in 0..<classes {
            position = table.scan(position) { head in
                var handle = head
                while handle != 0 {
                    let item = record(handle)
                    if !item.isExpired(now: now) && !sequence.pointee.isFlushed(item) {
                        body(item)
                        visited += 1
                    }
                    handle = item.next
                }
            }
            if position == 0 { break }
        }
        return (position, visited)
    }
}
