import EventLoop

/// How the proxy opens a connection to a node, in one place for every kind
/// of link (requests, health probes, stats polls, the rebalance): plain
/// text, or TLS with the node's certificate checked for the node's address
/// (`node_tls:`).
struct NodeDialer: Sendable {
    let tls: TLSClientContext?
    /// memcached's ASCII authentication (`node_auth:`): the login sent first
    /// on every link, whose `STORED` is taken off before the link reads.
    let login: NodeLogin?

    init(tls: TLSClientContext?, login: NodeLogin? = nil) {
        self.tls = tls
        self.login = login
    }

    static let plain = NodeDialer(tls: nil)

    /// Starts a non-blocking connect to `address` for `handler`; throws when
    /// it is refused at once.
    func connect(to address: SocketAddress, loop: EventLoop, handler: any ConnectionHandler) throws -> Connection {
        let connection = Connection(connecting: try Socket.connect(to: address), loop: loop, handler: handler,
                                    tls: tls, peer: address.host)
        if let login {
            login.request.withUnsafeBytes { connection.output.append($0) }
            connection.expectFirst(NodeLogin.accepted) { answer in login.refused(by: address, answer: answer) }
        }
        return connection
    }
}

/// The `set` that logs in to a `-Y` node (memcached's ASCII authentication).
final class NodeLogin: Sendable {
    let request: [UInt8]
    static let accepted = Array("STORED\r\n".utf8)
    private let onRefusal: @Sendable (String) -> Void

    init(user: String, password: String, onRefusal: @escaping @Sendable (String) -> Void) {
        let data = Array("\(user) \(password)".utf8)
        request = Array("set memcluster-login 0 0 \(data.count)\r\n".utf8) + data + Array("\r\n".utf8)
        self.onRefusal = onRefusal
    }

    func refused(by address: SocketAddress, answer: String) {
        onRefusal("node \(address) refused the login (node_auth): \(answer)")
    }
}
