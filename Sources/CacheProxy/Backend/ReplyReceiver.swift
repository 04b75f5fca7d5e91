import MemcacheProtocol

/// Why a request sent to a node got no reply.
public enum BackendFailure: Sendable {
    case timeout
    case connectionLost
    case nodeDown
    /// The node answered something that cannot be framed, or that cannot be
    /// the reply to the request at the head of the connection.
    case malformedReply
}

/// Whoever waits for a node's reply. Called on the worker's loop thread.
protocol ReplyReceiver: AnyObject {
    /// One unit of the reply to request `tag`; `last` is true for the unit that
    /// completes it. `bytes` holds the unit's ranges; it is valid only during the
    /// call. Returns false when the unit cannot belong to the request (a VALUE
    /// for a key it did not ask for): the connection is then closed, and this
    /// request fails like every other one in flight on it.
    func backend(_ node: BackendNode, received unit: Response, in bytes: UnsafeRawBufferPointer, tag: Int,
                 last: Bool) -> Bool
    /// Request `tag` will get no reply from `node`.
    func backend(_ node: BackendNode, failed failure: BackendFailure, tag: Int)
}
