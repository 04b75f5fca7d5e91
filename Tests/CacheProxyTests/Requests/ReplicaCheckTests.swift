@testable import CacheProxy
import Testing

/// `ReplicaCheck`: a write's key is read back from its replicas once they all
/// answered; copies that still differ a request timeout later are made to
/// agree with the first replica's, only where they still hold what was read.
@Suite("Proxy replica check")
struct ReplicaCheckTests {
    /// A bed where `request` for key `k1` went to both replicas and each
    /// answered `reply`, which the client got.
    private func written(_ request: String = "set k1 0 0 2\r\nAA\r\n", reply: String = "STORED\r\n",
                         configure: (inout ProxyConfiguration) -> Void = { _ in }) -> (ProxyTestBed, [FakeNode]) {
        let bed = ProxyTestBed(configure: configure)
        let client = bed.connectClient()
        client.send(request)
        let replicas = bed.replicas(of: "k1")
        for node in replicas {
            _ = node.takeSent()
            node.reply(reply)
        }
        bed.run()
        #expect(client.takeText() == reply)
        return (bed, replicas)
    }

    /// A bed whose key `k1` was just set on both replicas, and the check's reads.
    private func afterSet() -> (ProxyTestBed, [FakeNode]) {
        let (bed, replicas) = written()
        for node in replicas { #expect(node.takeSent() == "mg k1 v f t c\r\n") }
        return (bed, replicas)
    }

    /// Answers the check's first read with `first`, lets a request timeout
    /// pass, and answers the second read with `second` (one answer per replica).
    private func answerBothReads(_ bed: ProxyTestBed, _ replicas: [FakeNode], _ first: [String], _ second: [String]) {
        for (node, answer) in zip(replicas, first) { node.reply(answer) }
        bed.run()
        // Not yet: a write may still be on its way.
        for node in replicas { #expect(node.takeSent() == "") }
        bed.advance(milliseconds: 1_100)
        for node in replicas { #expect(node.takeSent() == "mg k1 v f t c\r\n") }
        for (node, answer) in zip(replicas, second) { node.reply(answer) }
        bed.run()
    }

    @Test("replicas that agree are left alone")
    func agreeingReplicas() {
        let (bed, replicas) = afterSet()
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
        let (bed, replicas) = afterSet()
        // another proxy's set landed at replica 0 last
        answerBothReads(bed, replicas, ["VA 2 f0 t-1 c5\r\nBB\r\n", "VA 2 f0 t-1 c9\r\nAA\r\n"],
                        ["VA 2 f3 t100 c5\r\nBB\r\n", "VA 2 f0 t-1 c9\r\nAA\r\n"])
        #expect(replicas[1].takeSent() == "ms k1 2 F3 T100 C9\r\nBB\r\n")
        #expect(replicas[0].takeSent() == "")
        #expect(bed.context.total(.replicaRepairs) == 1)
    }

    @Test("a difference gone by the second read (a write that was still landing) is not repaired")
    func passingDifferenceIsNot() {
        let (bed, replicas) = afterSet()
        answerBothReads(bed, replicas, ["VA 2 f0 t-1 c5\r\nBB\r\n", "VA 2 f0 t-1 c9\r\nAA\r\n"],
                        ["VA 2 f0 t-1 c5\r\nBB\r\n", "VA 2 f0 t-1 c10\r\nBB\r\n"])
        for node in replicas { #expect(node.takeSent() == "") }
        #expect(bed.context.total(.replicaRepairs) == 0)
    }

    @Test("a replica misses: the other copies are deleted by their CAS, whichever replica it is; none is created")
    func missAtTheFirstReplicaWins() {
        // a delete landed at replica 0 last
        let (bed, replicas) = afterSet()
        answerBothReads(bed, replicas, ["EN\r\n", "VA 2 f0 t-1 c9\r\nAA\r\n"], ["EN\r\n", "VA 2 f0 t-1 c9\r\nAA\r\n"])
        #expect(replicas[1].takeSent() == "md k1 C9\r\n")
        // a copy came back at replica 0 after a delete
        let (bed2, replicas2) = afterSet()
        answerBothReads(bed2, replicas2, ["VA 2 f0 t-1 c5\r\nAA\r\n", "EN\r\n"], ["VA 2 f0 t-1 c5\r\nAA\r\n", "EN\r\n"])
        #expect(replicas2[0].takeSent() == "md k1 C5\r\n")
        #expect(replicas2[1].takeSent() == "")
    }

    @Test("replica_check off, or a touch: nothing is read back")
    func switchedOff() {
        let (_, replicas) = written { $0.replicaCheck = false }
        for node in replicas { #expect(node.takeSent() == "") }
        let (_, touched) = written("touch k1 10\r\n", reply: "TOUCHED\r\n")
        for node in touched { #expect(node.takeSent() == "") }
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
