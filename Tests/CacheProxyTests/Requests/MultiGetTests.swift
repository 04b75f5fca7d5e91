@testable import CacheProxy
import Testing

/// Multi-key gets through the worker: one batch per node, merged in request
/// order, a key named twice asked once, failed batches retried on replicas,
/// and work that outlives its client.
@Suite("Proxy multi-get")
struct MultiGetTests {
    /// Three keys on three different primaries (replicas 1).
    private func spread(_ bed: ProxyTestBed) -> [String] {
        bed.nodes.enumerated().map { index, node in bed.key(ownedBy: node, prefix: "m\(index)-") }
    }

    @Test("one batch per node, sent together, merged in request order under one END")
    func mergedInRequestOrder() {
        let bed = ProxyTestBed(nodes: 3, replicas: 1)
        let keys = spread(bed)
        let client = bed.connectClient()
        client.send("get \(keys[2]) \(keys[0]) \(keys[1]) \(keys[2])\r\n")
        #expect(bed.nodes[0].takeSent() == "get \(keys[0])\r\n")
        #expect(bed.nodes[1].takeSent() == "get \(keys[1])\r\n")
        #expect(bed.nodes[2].takeSent() == "get \(keys[2])\r\n", "a key named twice is asked for once")
        bed.nodes[1].reply("VALUE \(keys[1]) 0 1\r\nb\r\nEND\r\n")
        bed.nodes[0].reply("END\r\n")
        bed.run()
        #expect(client.takeText() == "")
        bed.nodes[2].reply("VALUE \(keys[2]) 0 1\r\nc\r\nEND\r\n")
        bed.run()
        let c = "VALUE \(keys[2]) 0 1\r\nc\r\n"
        #expect(client.takeText() == c + "VALUE \(keys[1]) 0 1\r\nb\r\n" + c + "END\r\n")
        #expect(bed.context.total(.getHits) == 3)
        #expect(bed.context.total(.getMisses) == 1)
    }

    @Test("a batch whose node fails is asked again of the keys' next replicas")
    func failedBatchGoesToReplicas() {
        let bed = ProxyTestBed(nodes: 3, replicas: 2)
        let key = bed.key(ownedBy: bed.nodes[0], prefix: "f")
        let other = bed.key(ownedBy: bed.nodes[1], prefix: "g")
        let client = bed.connectClient()
        client.send("get \(key) \(other)\r\n")
        let next = bed.replicas(of: key)[1]
        #expect(bed.nodes[0].takeSent() == "get \(key)\r\n")
        #expect(bed.nodes[1].takeSent() == "get \(other)\r\n")
        bed.nodes[0].live!.reset()
        bed.run()
        #expect(next.takeSent() == "get \(key)\r\n")
        // Replies on a connection come in the order its requests went out.
        let first = next === bed.nodes[1] ? "VALUE \(other) 0 1\r\ng\r\nEND\r\n" : ""
        next.reply(first + "VALUE \(key) 0 1\r\nf\r\nEND\r\n")
        if next !== bed.nodes[1] { bed.nodes[1].reply("VALUE \(other) 0 1\r\ng\r\nEND\r\n") }
        bed.run()
        #expect(client.takeText() == "VALUE \(key) 0 1\r\nf\r\nVALUE \(other) 0 1\r\ng\r\nEND\r\n")
    }

    @Test("a VALUE for a key the batch did not ask for closes that node's connection")
    func valueForAnotherKey() {
        let bed = ProxyTestBed(nodes: 3, replicas: 2)
        let key = bed.key(ownedBy: bed.nodes[0], prefix: "v")
        let client = bed.connectClient()
        client.send("get \(key) \(key)x\r\n")
        let connection = bed.nodes[0].live!
        bed.nodes[0].reply("VALUE intruder 0 1\r\nz\r\nEND\r\n")
        bed.run()
        #expect(connection.isClosed)
        #expect(!client.takeText().contains("intruder"))
    }

    @Test("the client closes while batches are out: late replies are dropped and nothing breaks")
    func clientGoneBeforeReplies() {
        let bed = ProxyTestBed(nodes: 3, replicas: 1)
        let keys = spread(bed)
        let client = bed.connectClient()
        client.send("get \(keys.joined(separator: " "))\r\n")
        client.peer.reset()
        bed.run()
        for (index, node) in bed.nodes.enumerated() {
            node.reply("VALUE \(keys[index]) 0 1\r\nx\r\nEND\r\n")
        }
        bed.run()
        #expect(client.peer.isClosed)
        // The node connections stayed in step: a new client is served.
        let next = bed.connectClient()
        next.send("get \(keys[0])\r\n")
        #expect(bed.nodes[0].takeSent().hasSuffix("get \(keys[0])\r\n"))
        bed.nodes[0].reply("END\r\n")
        bed.run()
        #expect(next.takeText() == "END\r\n")
    }

    @Test("a multi-get waits for the client's earlier single-key requests in the other lane")
    func laneSwitchWaits() {
        let bed = ProxyTestBed(nodes: 1, replicas: 1)
        let node = bed.nodes[0]
        let client = bed.connectClient()
        client.send("set a 0 0 1\r\nx\r\nget a b\r\n")
        #expect(node.takeSent() == "set a 0 0 1\r\nx\r\n", "the multi-get is not sent before the set is answered")
        node.reply("STORED\r\n")
        bed.run()
        #expect(node.takeSent() == "get a b\r\n")
        node.reply("VALUE a 0 1\r\nx\r\nEND\r\n")
        bed.run()
        #expect(client.takeText() == "STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n")
        #expect(node.peers.count == 2, "single-key requests and multi-gets use connections of their own")
    }

    @Test("values over client_reply_max: memcached's out-of-memory answer, and the session goes on")
    func overTheClientBudget() {
        let bed = ProxyTestBed(nodes: 1, replicas: 1) { $0.clientReplyMax = 64 }
        let node = bed.nodes[0]
        let client = bed.connectClient()
        client.send("get a b\r\n")
        _ = node.takeSent()
        let value = String(repeating: "v", count: 40)
        node.reply("VALUE a 0 40\r\n\(value)\r\nVALUE b 0 40\r\n\(value)\r\nEND\r\n")
        bed.run()
        #expect(client.takeText() == "SERVER_ERROR out of memory writing get response\r\n")
        client.send("get a\r\n")
        node.reply("END\r\n")
        bed.run()
        #expect(client.takeText() == "END\r\n")
    }
}
