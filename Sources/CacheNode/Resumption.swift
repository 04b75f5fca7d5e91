import CacheStorage

/// Where a request that stopped at its output limit (`Disposition.suspended`)
/// goes on when it is executed again, once the connection's output has
/// drained. The connection's ClientSession keeps it between the two calls:
/// the processor keeps nothing per connection.
enum Resumption: Equatable {
    case none
    /// A multi-key get: the offset, in the request's bytes, of the next key.
    case retrieval(nextKey: Int)
    /// `lru_crawler metadump`: how far the walk over the store has come.
    case metadump(StoreCursor)
}
