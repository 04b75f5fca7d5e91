import MemcacheProtocol

/// How a node's reply to one request is framed.
public enum ReplyShape: Sendable {
    /// One unit: a status line, a number, or a meta reply (with its value).
    case single
    /// `VALUE` units up to `END` (get, gets, gat, gats).
    case retrieval
    /// `STAT` lines up to `END`.
    case stats
}

/// Why a request sent to a node got no reply.
public enum BackendFailure: Sendable {
    case timeout
    case connectionLost
    case nodeDown
    /// The node answered something that cannot be framed.
    case malformedReply
}

/// Whoever waits for a node's reply. Called on the worker's loop thread.
protocol BackendCall: AnyObject {
    /// One unit of the reply to request `tag`; `last` is true for the unit that
    /// completes it. `bytes` holds the unit's ranges; it is valid only during the call.
    func backend(_ node: BackendNode, received unit: Response, in bytes: UnsafeRawBufferPointer, tag: Int, last: Bool)
    /// Request `tag` will get no reply from `node`.
    func backend(_ node: BackendNode, failed failure: BackendFailure, tag: Int)
}
