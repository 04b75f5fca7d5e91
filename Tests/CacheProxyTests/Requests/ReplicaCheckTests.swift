@testable import CacheProxy
import Testing

/// `ReplicaCheck`: a write's key is read back from its replicas once they all
/// answered; copies that still differ a request timeout later are made to
/// agree with the first replica's, only where they still hold what was read.
@Suite("Proxy replica check")
struct ReplicaCheckTests {
    /// A bed whose key `k1` was just set on both replicas, and the check's reads.
    private func afterSet() -> (ProxyTestBed, FakeClient, [FakeNode]) {
        let bed = ProxyTestBed()
        let client = bed.connectClient()
        client.send("set k1 0 0 2\r\nAA\r\n")
        let replicas = bed.replicas(of: "k1")
        for node in replicas {
            _ = node.takeSent()
            node.reply("STORED\r\n")
        }
        bed.run()
        #expect(client.takeText() == "STORED\r\n")
        for node in replicas { #expect(node.takeSent() == "mg k1 v f t c\r\n") }
        return (bed, client, replicas)
    }

    @Test("replicas that agree are left alone")
    func agreeingReplicas() {
        let (bed, _, replicas) = afterSet()
        replicas[0].reply("VA 2 f0 t-1 c5\r\nAA\r\n")
        replicas[1].reply("VA 2 f0 t-1 c9\r\nAA\r\n")
        bed.run()
        bed.advance(milliseconds: 5_000)
        for node in replicas { #expect(node.takeSent() == "") }
        #expect(bed.context.total(.replicaChecks) == 1)
        #expect(bed.context.total(.replicaRepairs) == 0)
    }

    @Test("a difference that lasts is repaired from the first replica, only over the copy that was read")
    func lastingDifferenceIsRepaired() {
        let (bed, _, replicas) = afterSet()
        replicas[0].reply("VA 2 f0 t-1 c5\r\nBB\r\n")       // another proxy's set landed here last
        replicas[1].reply("VA 2 f0 t-1 c9\r\nAA\r\n")
        bed.run()
        // Not yet: the other write may still be on its way to replica 1.
        for node in replicas { #expect(node.takeSent() == "") }
        bed.advance(milliseconds: 1_100)
        for node in replicas { #expect(node.takeSent() == "mg k1 v f t c\r\n") }
        replicas[0].reply("VA 2 f3 t100 c5\r\nBB\r\n")
        replicas[1].reply("VA 2 f0 t-1 c9\r\nAA\r\n")
        bed.run()
        #expect(replicas[1].takeSent() == "ms k1 2 F3 T100 C9\r\nBB\r\n")
        #expect(replicas[0].takeSent() == "")
        #expect(bed.context.total(.replicaRepairs) == 1)
    }

    @Test("a difference gone by the second read (a write that was still landing) is not repaired")
    func passingDifferenceIsNot() {
        let (bed, _, replicas) = afterSet()
        replicas[0].reply("VA 2 f0 t-1 c5\r\nBB\r\n")
        replicas[1].reply("VA 2 f0 t-1 c9\r\nAA\r\n")
        bed.run()
        bed.advance(milliseconds: 1_100)
        for node in replicas { _ = node.takeSent() }
        replicas[0].reply("VA 2 f0 t-1 c5\r\nBB\r\n")
        replicas[1].reply("VA 2 f0 t-1 c10\r\nBB\r\n")
        bed.run()
        for node in replicas { #expect(node.takeSent() == "") }
        #expect(bed.context.total(.replicaRepairs) == 0)
    }

    @Test("a replica misses: the other copies are deleted by their CAS, whichever replica it is; none is created")
    func missAtTheFirstReplicaWins() {
        let (bed, _, replicas) = afterSet()
        replicas[0].reply("EN\r\n")                          // a delete landed here last
        replicas[1].reply("VA 2 f0 t-1 c9\r\nAA\r\n")
        bed.run()
        bed.advance(milliseconds: 1_100)
        for node in replicas { _ = node.takeSent() }
        replicas[0].reply("EN\r\n")
        replicas[1].reply("VA 2 f0 t-1 c9\r\nAA\r\n")
        bed.run()
        #expect(replicas[1].takeSent() == "md k1 C9\r\n")

        let (bed2, _, replicas2) = afterSet()
        replicas2[0].reply("VA 2 f0 t-1 c5\r\nAA\r\n")    // a copy came back after a delete
        replicas2[1].reply("EN\r\n")
        bed2.run()
        bed2.advance(milliseconds: 1_100)
        for node in replicas2 { _ = node.takeSent() }
        replicas2[0].reply("VA 2 f0 t-1 c5\r\nAA\r\n")
        replicas2[1].reply("EN\r\n")
        bed2.run()
        #expect(replicas2[0].takeSent() == "md k1 C5\r\n")
        #expect(replicas2[1].takeSent() == "")
    }

    @Test("replica_check off, or a touch: nothing is read back")
    func switchedOff() {
        let bed = ProxyTestBed { $0.replicaCheck = false }
        let client = bed.connectClient()
        client.send("set k1 0 0 2\r\nAA\r\n")
        let replicas = bed.replicas(of: "k1")
        for node in replicas {
            _ = node.takeSent()
            node.reply("STORED\r\n")
        }
        bed.run()
        #expect(client.takeText() == "STORED\r\n")
        for node in replicas { #expect(node.takeSent() == "") }

        let bed2 = ProxyTestBed()
        let client2 = bed2.connectClient()
        client2.send("touch k1 10\r\n")
        let replicas2 = bed2.replicas(of: "k1")
        for node in replicas2 {
            _ = node.takeSent()
            node.reply("TOUCHED\r\n")
        }
        bed2.run()
        #expect(client2.takeText() == "TOUCHED\r\n")
        for node in replicas2 { #expect(node.takeSent() == "") }
    }

    @Test("a noreply write is read back a request timeout later, once every replica must have answered")
    func noreplyIsCheckedLater() {
        let bed = ProxyTestBed()
        let client = bed.connectClient()
        client.send("set k1 0 0 2 noreply\r\nAA\r\n")
        let replicas = bed.replicas(of: "k1")
        for node in replicas {
            #expect(node.takeSent() == "set k1 0 0 2\r\nAA\r\n")
            node.reply("STORED\r\n")
        }
        bed.run()
        for node in replicas { #expect(node.takeSent() == "") }
        bed.advance(milliseconds: 1_100)
        for node in replicas { #expect(node.takeSent() == "mg k1 v f t c\r\n") }
    }
}
