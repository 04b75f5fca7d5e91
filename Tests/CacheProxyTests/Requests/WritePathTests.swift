@testable import CacheProxy
import Testing

/// Writes through the worker, against nodes the test plays: every replica
/// gets the request, the client gets the first replica's answer in ring
/// order, quiet rules, and a replica that may have missed a write.
@Suite("Proxy write path")
struct WritePathTests {
    @Test("a set goes to every replica; the client is answered once all have answered (write_policy all)")
    func setReachesEveryReplica() {
        let bed = ProxyTestBed()
        let client = bed.connectClient()
        client.send("set k1 3 0 2\r\nhi\r\n")
        let replicas = bed.replicas(of: "k1")
        for node in replicas { #expect(node.takeSent() == "set k1 3 0 2\r\nhi\r\n") }
        #expect(bed.stranger(to: "k1")!.takeSent() == "")
        replicas[1].reply("STORED\r\n")
        bed.run()
        #expect(client.takeText() == "")
        replicas[0].reply("STORED\r\n")
        bed.run()
        #expect(client.takeText() == "STORED\r\n")
    }

    @Test("with write_policy primary the client is answered by the primary alone")
    func primaryPolicy() {
        let bed = ProxyTestBed { $0.writePolicy = .primary }
        let client = bed.connectClient()
        client.send("delete k1\r\n")
        let replicas = bed.replicas(of: "k1")
        for node in replicas { #expect(node.takeSent() == "delete k1\r\n") }
        replicas[0].reply("DELETED\r\n")
        bed.run()
        #expect(client.takeText() == "DELETED\r\n")
        replicas[1].reply("NOT_FOUND\r\n")
        bed.run()
        #expect(client.takeText() == "")
    }

    @Test("noreply is never forwarded: nodes answer, the client hears nothing, later replies do not wait")
    func noreplyIsHandledByTheProxy() {
        let bed = ProxyTestBed(nodes: 1, replicas: 1)
        let client = bed.connectClient()
        client.send("set k 0 0 1 noreply\r\nx\r\nincr n 5 noreply\r\nget k\r\n")
        let node = bed.nodes[0]
        #expect(node.takeSent() == "set k 0 0 1\r\nx\r\nincr n 5\r\nget k\r\n")
        node.reply("STORED\r\nNOT_FOUND\r\nVALUE k 0 1\r\nx\r\nEND\r\n")
        bed.run()
        #expect(client.takeText() == "VALUE k 0 1\r\nx\r\nEND\r\n")
    }

    @Test("quiet meta writes: the node decides what q hides (ma with N answers HD even with q)")
    func quietMetaWrites() {
        let bed = ProxyTestBed(nodes: 1, replicas: 1)
        let client = bed.connectClient()
        client.send("ma cnt N0 J5 q\r\nms k 1 q\r\nx\r\nmn\r\n")
        let node = bed.nodes[0]
        #expect(node.takeSent() == "ma cnt N0 J5 q\r\nmn\r\nms k 1 q\r\nx\r\nmn\r\n")
        node.reply("HD\r\nMN\r\nMN\r\n")
        bed.run()
        #expect(client.takeText() == "HD\r\nMN\r\n")
    }

    @Test("a write whose replica connection is lost marks that node down (it may have missed the write)")
    func missedWriteMarksTheNodeDown() {
        let bed = ProxyTestBed { $0.failureLimit = 100 }
        let client = bed.connectClient()
        client.send("set k1 0 0 1\r\nx\r\n")
        let replicas = bed.replicas(of: "k1")
        _ = replicas[0].takeSent()
        _ = replicas[1].takeSent()
        replicas[0].reply("STORED\r\n")
        replicas[1].live!.reset()
        bed.run()
        #expect(client.takeText() == "STORED\r\n")
        #expect(!replicas[1].node.isUp)
        #expect(bed.markedDown.withLock { $0 } == [replicas[1].node.identity])
    }

    @Test("a cas goes to the first replica only; on success the value is copied to the others as a plain store")
    func compareAndSwapCopies() {
        let bed = ProxyTestBed()
        let client = bed.connectClient()
        client.send("cas k1 7 0 2 42\r\nhi\r\n")
        let replicas = bed.replicas(of: "k1")
        #expect(replicas[0].takeSent() == "cas k1 7 0 2 42\r\nhi\r\n")
        #expect(replicas[1].takeSent() == "")
        replicas[0].reply("STORED\r\n")
        bed.run()
        #expect(client.takeText() == "STORED\r\n")
        #expect(replicas[1].takeSent() == "ms k1 2 F7 T0\r\nhi\r\n")
    }

    @Test("a value over item_size_max never reaches a node, and its old copies are deleted")
    func tooLargeDeletesOldCopies() {
        let bed = ProxyTestBed { $0.itemSizeMax = 1024 }
        let client = bed.connectClient()
        client.send("set k1 0 0 2000\r\n" + String(repeating: "x", count: 2000) + "\r\n")
        #expect(client.takeText() == "SERVER_ERROR object too large for cache\r\n")
        for node in bed.replicas(of: "k1") { #expect(node.takeSent() == "md k1\r\n") }
    }
}
