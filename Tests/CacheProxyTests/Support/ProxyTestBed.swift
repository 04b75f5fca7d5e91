@testable import CacheProxy
import Concurrency
import EventLoop
import Glibc

/// A cache node played by a test: every connection the worker opens to it is
/// an embedded one, whose other end (`EmbeddedPeer`) the test reads and
/// answers.
final class FakeNode {
    let node: BackendNode
    /// Connections the worker opened, oldest first.
    private(set) var peers: [EmbeddedPeer] = []
    /// Refuse the next connects at once (no route, no port).
    var refusing = false

    init(node: BackendNode) { self.node = node }

    func opened(_ peer: EmbeddedPeer) { peers.append(peer) }

    /// What the worker sent on every connection since the last call, in the
    /// order the connections were opened.
    func takeSent() -> String {
        peers.map { String(decoding: $0.takeWritten(), as: UTF8.self) }.joined()
    }

    /// The connection that has sent something not answered yet: the one the
    /// last `takeSent` read from, or the newest open one.
    var live: EmbeddedPeer? { peers.last { !$0.isClosed } }

    /// Answers on the newest open connection.
    func reply(_ text: String) {
        guard let live else { fatalError("\(node) has no open connection to answer on") }
        live.send(Array(text.utf8))
    }
}

/// One proxy worker with `FakeNode`s behind it and a clock moved by hand:
/// the proxy's request path with no socket, no loop turning and no sleep.
///
///   let bed = ProxyTestBed(nodes: 3, replicas: 2)
///   let client = bed.connectClient()
///   client.send("get k\r\n"); bed.run()
///   bed.primary(of: "k").takeSent()         // "get k\r\n"
///   bed.primary(of: "k").reply("END\r\n"); bed.run()
///   client.takeText()                        // "END\r\n"
final class ProxyTestBed {
    let loop: EventLoop
    let context: ProxyContext
    private(set) var worker: ProxyWorker!
    let nodes: [FakeNode]
    /// Monotonic milliseconds as the worker reads them.
    var clock: Int64 = 1_000_000
    /// Nodes the worker marked down, in order.
    let markedDown = Locked<[String]>([])
    let connectionsLost = Locked<[String]>([])

    init(nodes count: Int = 3, replicas: Int = 2, configure: (inout ProxyConfiguration) -> Void = { _ in }) {
        var configuration = ProxyConfiguration()
        configuration.nodes = (0..<count).map { RingNode(host: "127.0.0.1", port: UInt16(41000 + $0), weight: 1) }
        configuration.replicas = replicas
        configuration.threads = 1
        configure(&configuration)
        let backendNodes = configuration.nodes.map { try! BackendNode(ringNode: $0) }
        let topology = try! Topology(configuration: configuration, nodes: backendNodes)
        context = ProxyContext(workers: 1, topology: topology, startedAt: 0)
        loop = try! EventLoop()
        nodes = backendNodes.map(FakeNode.init)
        var links = NodeLinks()
        links.clock = { [unowned self] in clock }
        links.connect = { [unowned self] node, loop, handler in
            let fake = fakeNode(node)
            if fake.refusing { throw SystemCallError("connect", errno: ECONNREFUSED) }
            let peer = EmbeddedPeer()
            fake.opened(peer)
            return Connection(embedded: peer, loop: loop, handler: handler, connecting: true)
        }
        let markedDown = self.markedDown
        let connectionsLost = self.connectionsLost
        worker = ProxyWorker(loop: loop, index: 0, context: context, links: links,
                             onNodeDown: { node in markedDown.withLock { $0.append(node.identity) } },
                             onConnectionLost: { node in connectionsLost.withLock { $0.append(node.identity) } })
    }

    func fakeNode(_ node: BackendNode) -> FakeNode { nodes.first { $0.node === node }! }

    /// A client connected to the worker.
    func connectClient() -> FakeClient {
        let peer = EmbeddedPeer()
        worker.attachSession { session in Connection(embedded: peer, loop: loop, handler: session) }
        return FakeClient(peer: peer, bed: self)
    }

    /// What one turn of the worker's loop would do: connects complete, then
    /// everything gathered is written (until nothing more happens).
    func run() {
        for _ in 0..<8 {
            var progressed = false
            for node in nodes {
                for peer in node.peers where !peer.isClosed && peer.isConnecting {
                    peer.establish()
                    progressed = true
                }
            }
            worker.flushGathered()
            if !progressed { break }
        }
    }

    /// Moves the clock and lets the worker look for requests that waited too long.
    func advance(milliseconds: Int64) {
        clock += milliseconds
        worker.checkDeadlines()
        run()
    }

    /// The nodes of `key`'s replica set, primary first.
    func replicas(of key: String) -> [FakeNode] {
        let topology = context.topology
        let set = Array(key.utf8).withUnsafeBytes { topology.replicaSet(of: $0) }
        return set.map { nodes[$0] }
    }

    func primary(of key: String) -> FakeNode { replicas(of: key)[0] }

    /// A node outside `key`'s replica set (nil with as many replicas as nodes).
    func stranger(to key: String) -> FakeNode? {
        let set = replicas(of: key)
        return nodes.first { node in !set.contains { $0 === node } }
    }

    /// A key whose primary is `node` (and whose replica set is `[node, ...]`).
    func key(ownedBy node: FakeNode, prefix: String = "k") -> String {
        for index in 0..<100_000 where primary(of: "\(prefix)\(index)") === node { return "\(prefix)\(index)" }
        fatalError("no key for \(node.node)")
    }
}

/// A client of the worker, played by a test.
final class FakeClient {
    let peer: EmbeddedPeer
    unowned let bed: ProxyTestBed

    init(peer: EmbeddedPeer, bed: ProxyTestBed) {
        self.peer = peer
        self.bed = bed
    }

    /// Sends `text` and lets the worker route it.
    func send(_ text: String) {
        peer.send(Array(text.utf8))
        bed.run()
    }

    /// What the client has been sent since the last call.
    func takeText() -> String { String(decoding: peer.takeWritten(), as: UTF8.self) }
}
