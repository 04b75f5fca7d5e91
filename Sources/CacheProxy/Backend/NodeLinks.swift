import EventLoop

/// How a worker reaches its nodes and reads the time. The proxy connects
/// sockets and reads the monotonic clock; the unit tests give every node an
/// embedded connection they play themselves, and a clock they move by hand,
/// so routing, failover, timeouts and multi-gets run with no socket and no
/// sleep.
struct NodeLinks {
    /// Opens a connection to `node` for `handler`; throws when it is refused at once.
    var connect: (_ node: BackendNode, _ loop: EventLoop, _ handler: any ConnectionHandler) throws -> Connection
    /// Monotonic milliseconds; nil: the real clock.
    var clock: (() -> Int64)?

    init(dialer: NodeDialer = .plain) {
        connect = { node, loop, handler in try dialer.connect(to: node.address, loop: loop, handler: handler) }
    }
}
