@testable import CacheProxy
import Testing

/// Single-key reads through the worker, against nodes the test plays:
/// routing, fallback to the next replica, timeouts, replies in pieces, and
/// replies that cannot belong to their request.
@Suite("Proxy read path")
struct ReadPathTests {
    @Test("a get goes to the key's primary only, and its reply reaches the client as sent")
    func primaryAnswers() {
        let bed = ProxyTestBed()
        let client = bed.connectClient()
        client.send("get k1\r\n")
        let primary = bed.primary(of: "k1")
        #expect(primary.takeSent() == "get k1\r\n")
        for node in bed.nodes where node !== primary { #expect(node.takeSent() == "") }
        primary.reply("VALUE k1 5 2\r\nhi\r\nEND\r\n")
        bed.run()
        #expect(client.takeText() == "VALUE k1 5 2\r\nhi\r\nEND\r\n")
    }

    @Test("a reply that arrives one byte at a time is passed on once, whole")
    func replyInPieces() {
        let bed = ProxyTestBed()
        let client = bed.connectClient()
        client.send("get k1\r\n")
        let primary = bed.primary(of: "k1")
        _ = primary.takeSent()
        let reply = Array("VALUE k1 0 5\r\nhello\r\nEND\r\n".utf8)
        for byte in reply.dropLast() {
            primary.live!.send([byte])
            bed.run()
            #expect(client.takeText() == "")
        }
        primary.live!.send([reply.last!])
        bed.run()
        #expect(client.takeText() == "VALUE k1 0 5\r\nhello\r\nEND\r\n")
    }

    @Test("when the primary's connection is lost mid-request, the next replica answers")
    func fallbackOnLostConnection() {
        let bed = ProxyTestBed()
        let client = bed.connectClient()
        client.send("get k1\r\n")
        let (primary, replica) = (bed.replicas(of: "k1")[0], bed.replicas(of: "k1")[1])
        _ = primary.takeSent()
        primary.live!.reset()
        bed.run()
        #expect(replica.takeSent() == "get k1\r\n")
        replica.reply("VALUE k1 0 1\r\nr\r\nEND\r\n")
        bed.run()
        #expect(client.takeText() == "VALUE k1 0 1\r\nr\r\nEND\r\n")
        #expect(bed.context.total(.readFallbacks) == 1)
    }

    @Test("a primary that never answers times out; the next replica answers")
    func fallbackOnTimeout() {
        let bed = ProxyTestBed { $0.requestTimeoutMilliseconds = 500 }
        let client = bed.connectClient()
        client.send("get k1\r\n")
        let (primary, replica) = (bed.replicas(of: "k1")[0], bed.replicas(of: "k1")[1])
        _ = primary.takeSent()
        bed.advance(milliseconds: 400)
        #expect(replica.takeSent() == "")
        bed.advance(milliseconds: 200)
        #expect(primary.live == nil, "the timed-out connection is closed")
        #expect(replica.takeSent() == "get k1\r\n")
        replica.reply("END\r\n")
        bed.run()
        #expect(client.takeText() == "END\r\n")
    }

    @Test("a node sending a long reply slowly is not timed out while bytes keep coming")
    func slowButAliveIsNotTimedOut() {
        let bed = ProxyTestBed { $0.requestTimeoutMilliseconds = 500 }
        let client = bed.connectClient()
        client.send("get k1\r\n")
        let primary = bed.primary(of: "k1")
        _ = primary.takeSent()
        let reply = Array("VALUE k1 0 10\r\n0123456789\r\nEND\r\n".utf8)
        for byte in reply {
            bed.advance(milliseconds: 300)
            primary.live!.send([byte])
            bed.run()
        }
        #expect(client.takeText() == "VALUE k1 0 10\r\n0123456789\r\nEND\r\n")
        #expect(bed.replicas(of: "k1")[1].takeSent() == "")
    }

    @Test("a reply its request could not have caused closes the connection instead of reaching the client",
          arguments: ["STORED\r\n", "VALUE other 0 1\r\nx\r\nEND\r\n", "HD\r\n", "DELETED\r\n"])
    func outOfStepReplyClosesTheConnection(_ wrong: String) {
        let bed = ProxyTestBed()
        let client = bed.connectClient()
        client.send("get k1\r\n")
        let (primary, replica) = (bed.replicas(of: "k1")[0], bed.replicas(of: "k1")[1])
        _ = primary.takeSent()
        let connection = primary.live!
        primary.reply(wrong)
        bed.run()
        #expect(connection.isClosed && connection.wasReset)
        #expect(client.takeText() == "", "nothing of the wrong reply reaches the client")
        #expect(replica.takeSent() == "get k1\r\n")
        replica.reply("END\r\n")
        bed.run()
        #expect(client.takeText() == "END\r\n")
    }

    @Test("a NUL byte next to noreply: the node gets exactly the parsed request and every client its own reply")
    func nulNoreplyKeepsRepliesInStep() {
        let bed = ProxyTestBed(nodes: 1, replicas: 1)
        let attacker = bed.connectClient()
        let victim = bed.connectClient()
        attacker.send("set foo 0 0 3 noreply \u{0}\r\nbar\r\nset x 0 0 1\r\n1\r\n")
        victim.send("get secret\r\n")
        let node = bed.nodes[0]
        #expect(node.takeSent() == "set foo 0 0 3\r\nbar\r\nset x 0 0 1\r\n1\r\nget secret\r\n")
        node.reply("STORED\r\nSTORED\r\nVALUE secret 0 6\r\nsecret\r\nEND\r\n")
        bed.run()
        #expect(attacker.takeText() == "STORED\r\n")
        #expect(victim.takeText() == "VALUE secret 0 6\r\nsecret\r\nEND\r\n")
    }

    @Test("mg with q: the node gets q followed by mn, and a hidden miss reaches the client as nothing")
    func quietMetaGet() {
        let bed = ProxyTestBed()
        let client = bed.connectClient()
        client.send("mg k1 v q\r\nmn\r\n")
        let primary = bed.primary(of: "k1")
        #expect(primary.takeSent() == "mg k1 v q\r\nmn\r\n")
        primary.reply("MN\r\n")
        bed.run()
        #expect(client.takeText() == "MN\r\n")
    }

    @Test("requests pipelined by one client are answered in order whatever order the nodes answer in")
    func pipelinedRepliesKeepOrder() {
        let bed = ProxyTestBed(nodes: 3, replicas: 1)
        let first = bed.nodes[0]
        let second = bed.nodes.first { $0 !== first }!
        let keyA = bed.key(ownedBy: first, prefix: "a")
        let keyB = bed.key(ownedBy: second, prefix: "b")
        let client = bed.connectClient()
        client.send("get \(keyA)\r\nget \(keyB)\r\n")
        _ = first.takeSent()
        _ = second.takeSent()
        second.reply("VALUE \(keyB) 0 1\r\nb\r\nEND\r\n")
        bed.run()
        #expect(client.takeText() == "", "the second reply waits for the first")
        first.reply("VALUE \(keyA) 0 1\r\na\r\nEND\r\n")
        bed.run()
        #expect(client.takeText() == "VALUE \(keyA) 0 1\r\na\r\nEND\r\nVALUE \(keyB) 0 1\r\nb\r\nEND\r\n")
    }
}
