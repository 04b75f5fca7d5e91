/// Which of a node's connections a request takes. Replies on one connection
/// come back in order, so a request waits for every reply sent before it on
/// its connection: multi-key gets, whose replies can be megabytes, have
/// connections of their own, and the small requests of other clients never
/// queue behind them.
enum Lane {
    /// Single-key requests (a value is at most item_size_max).
    case requests
    /// Multi-key gets.
    case bulk
}
