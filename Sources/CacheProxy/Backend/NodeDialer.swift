import Concurrency
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
/// A reload may change the user and password: links opened after it log in
/// with the new ones, those already logged in stay (as on the node).
final class NodeLogin: Sendable {
    static let accepted = Array("STORED\r\n".utf8)
    private let current: Locked<[UInt8]>
    private let onRefusal: @Sendable (String) -> Void

    init(user: String, password: [UInt8], onRefusal: @escaping @Sendable (String) -> Void) {
        current = Locked(NodeLogin.request(user: user, password: password))
        self.onRefusal = onRefusal
    }

    /// What a new link sends first.
    var request: [UInt8] { current.withLock { $0 } }

    func update(user: String, password: [UInt8]) {
        let request = NodeLogin.request(user: user, password: password)
        current.withLock { $0 = request }
    }

    private static func request(user: String, password: [UInt8]) -> [UInt8] {
        let data = Array(user.utf8) + [UInt8(ascii: " ")] + password
        return Array("set memcluster-login 0 0 \(data.count)\r\n".utf8) + data + Array("\r\n".utf8)
    }

    func refused(by address: SocketAddress, answer: String) {
        onRefusal("node \(address) refused the login (node_auth): \(answer)")
    }
}
