import EventLoop

/// How the proxy opens a connection to a node, in one place for every kind
/// of link (requests, health probes, stats polls, the rebalance): plain
/// text, or TLS with the node's certificate checked for the node's address
/// (`node_tls:`).
struct NodeDialer: Sendable {
    let tls: TLSClientContext?

    static let plain = NodeDialer(tls: nil)

    /// Starts a non-blocking connect to `address` for `handler`; throws when
    /// it is refused at once.
    func connect(to address: SocketAddress, loop: EventLoop, handler: any ConnectionHandler) throws -> Connection {
        Connection(connecting: try Socket.connect(to: address), loop: loop, handler: handler, tls: tls, peer: address.host)
    }
}
