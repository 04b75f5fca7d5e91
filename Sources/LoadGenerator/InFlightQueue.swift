/// What a connection is waiting for, oldest first. Replies come back in request
/// order, so the front entry owns every reply unit until it completes.
enum RequestKind: UInt8 {
    /// `version`, sent once per connection before the run (its reply names the server).
    case versionProbe
    /// `mn`, sent once in meta mode: proves the server speaks the meta protocol.
    case noopProbe
    /// `get k1 ... kN`: VALUE units, then END.
    case textGet
    /// `set k 0 0 n`: STORED.
    case textSet
    /// `mg k v`: VA or EN.
    case metaGet
    /// `mg k v q` x N, `mn`: VA units, then MN.
    case metaMultiGet
    /// `ms k n`: HD.
    case metaSet
}

struct PendingRequest {
    /// Where its latency starts: the send time (closed loop) or the scheduled time (open loop).
    var origin: UInt64
    var kind: RequestKind
    /// Issued inside the measured window: counted and recorded.
    var measured: Bool
    /// Part of `--fill`: counted separately, never measured.
    var fill: Bool
    var keys: UInt16
    var hits: UInt16
}

/// A fixed-capacity ring of pending requests (capacity: the connection's pipeline
/// depth), allocated once per connection. Loop thread only.
struct InFlightQueue: ~Copyable {
    private let storage: UnsafeMutablePointer<PendingRequest>
    let capacity: Int
    private var head = 0
    private(set) var count = 0

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        storage = UnsafeMutablePointer<PendingRequest>.allocate(capacity: capacity)
    }

    deinit { storage.deallocate() }

    var isEmpty: Bool { count == 0 }
    var isFull: Bool { count == capacity }

    @inline(__always)
    mutating func push(_ request: PendingRequest) {
        precondition(count < capacity, "more requests in flight than the pipeline allows")
        var slot = head + count
        if slot >= capacity { slot -= capacity }
        // Safe because slot < capacity; PendingRequest is trivial, so no deinitialization is owed.
        (storage + slot).initialize(to: request)
        count += 1
    }

    /// The oldest request, to update in place. Only while `count > 0`.
    @inline(__always)
    var front: UnsafeMutablePointer<PendingRequest> {
        storage + head
    }

    @inline(__always)
    mutating func popFront() -> PendingRequest {
        let request = storage[head]
        head += 1
        if head == capacity { head = 0 }
        count -= 1
        return request
    }

    /// Drops every pending request (the connection closed); says how many there were.
    mutating func removeAll() -> (total: Int, measured: Int) {
        let total = count
        var measured = 0
        while count > 0 { if popFront().measured { measured += 1 } }
        return (total, measured)
    }
}
