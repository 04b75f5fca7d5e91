@testable import CacheProxy
import Testing

/// A node that came back empty is refilled from the key's next replica on a
/// miss, and `KeyFence` keeps such copies and clients' writes of the same key
/// apart, so a copy never brings back a deleted value.
@Suite("Proxy refill and fence")
struct RefillTests {
    /// A bed whose node 0 is refilling, and a key with node 0 as primary.
    private func refilling() -> (ProxyTestBed, key: String, primary: FakeNode, replica: FakeNode) {
        let bed = ProxyTestBed()
        let key = bed.key(ownedBy: bed.nodes[0], prefix: "r")
        bed.nodes[0].node.startRefill(until: bed.clock + 60_000)
        return (bed, key, bed.nodes[0], bed.replicas(of: key)[1])
    }

    @Test("a miss at a refilling primary is looked up on the replica, copied back with add, then read again")
    func missIsRefilled() {
        let (bed, key, primary, replica) = refilling()
        let client = bed.connectClient()
        client.send("get \(key)\r\n")
        #expect(primary.takeSent() == "get \(key)\r\n")
        primary.reply("END\r\n")
        bed.run()
        #expect(replica.takeSent() == "mg \(key) v f t\r\n")
        replica.reply("VA 1 f3 t-1\r\nx\r\n")
        bed.run()
        // The copy goes to every live replica, stored only where the key is missing.
        #expect(primary.takeSent() == "ms \(key) 1 F3 T0 ME\r\nx\r\n")
        #expect(replica.takeSent() == "ms \(key) 1 F3 T0 ME\r\nx\r\n")
        primary.reply("HD\r\n")
        replica.reply("NS\r\n")
        bed.run()
        #expect(primary.takeSent() == "get \(key)\r\n")
        primary.reply("VALUE \(key) 3 1\r\nx\r\nEND\r\n")
        bed.run()
        #expect(client.takeText() == "VALUE \(key) 3 1\r\nx\r\nEND\r\n")
        #expect(bed.context.total(.warmupHits) == 1)
    }

    @Test("a delete of a key being copied is not sent before the copy is answered, then reaches every replica")
    func deleteWaitsForCopy() {
        let (bed, key, primary, replica) = refilling()
        let reader = bed.connectClient()
        let deleter = bed.connectClient()
        reader.send("get \(key)\r\n")
        _ = primary.takeSent()
        primary.reply("END\r\n")
        bed.run()
        #expect(replica.takeSent() == "mg \(key) v f t\r\n")   // the reader's copy holds the key's stripe
        deleter.send("delete \(key)\r\n")
        // The delete first brings the key to its refilling primary (a copy of its own)...
        #expect(replica.takeSent() == "mg \(key) v f t\r\n")
        #expect(primary.takeSent() == "")
        replica.reply("VA 1 f0 t-1\r\nx\r\nVA 1 f0 t-1\r\nx\r\n")
        bed.run()
        #expect(primary.takeSent() == String(repeating: "ms \(key) 1 F0 T0 ME\r\nx\r\n", count: 2))
        #expect(replica.takeSent() == String(repeating: "ms \(key) 1 F0 T0 ME\r\nx\r\n", count: 2))
        // ...and is sent only once both copies are answered.
        primary.reply("HD\r\n")
        replica.reply("NS\r\nNS\r\n")
        bed.run()
        #expect(!primary.takeSent().contains("delete"), "one copy is still unanswered")
        primary.reply("NS\r\n")
        bed.run()
        bed.worker.retryFencedWrites()
        bed.run()
        #expect(primary.takeSent().contains("delete \(key)\r\n"))
        #expect(replica.takeSent() == "delete \(key)\r\n")
    }

    @Test("no copy starts while a write of the key is under way: the read is a miss")
    func copySkippedDuringWrite() {
        let (bed, key, primary, replica) = refilling()
        let writer = bed.connectClient()
        let reader = bed.connectClient()
        writer.send("delete \(key)\r\n")
        #expect(replica.takeSent() == "mg \(key) v f t\r\n")
        replica.reply("EN\r\n")              // nothing to bring over
        bed.run()
        #expect(primary.takeSent() == "delete \(key)\r\n")
        #expect(replica.takeSent() == "delete \(key)\r\n")   // the delete holds the stripe until answered
        reader.send("get \(key)\r\n")
        #expect(primary.takeSent() == "get \(key)\r\n")
        primary.reply("NOT_FOUND\r\nEND\r\n")
        bed.run()
        #expect(replica.takeSent() == "", "no mg at the replica: a copy now could undo the delete")
        #expect(reader.takeText() == "END\r\n")
        #expect(bed.context.total(.warmupSkips) == 1)
        replica.reply("DELETED\r\n")
        bed.run()
        #expect(writer.takeText() == "NOT_FOUND\r\n")
    }

    @Test("the client goes away while its key is being copied: the copy finishes and gives the key back")
    func clientGoneDuringCopy() {
        let (bed, key, primary, replica) = refilling()
        let client = bed.connectClient()
        client.send("get \(key)\r\n")
        primary.reply("END\r\n")
        bed.run()
        #expect(replica.takeSent() == "mg \(key) v f t\r\n")
        client.peer.reset()
        bed.run()
        replica.reply("VA 1 f0 t-1\r\nx\r\n")
        bed.run()
        _ = primary.takeSent()
        _ = replica.takeSent()
        primary.reply("HD\r\n")
        replica.reply("NS\r\n")
        bed.run()
        #expect(primary.takeSent() == "", "the abandoned read is not sent again")
        // The stripe was given back: a delete goes out as soon as its own move is done.
        let writer = bed.connectClient()
        writer.send("delete \(key)\r\n")
        #expect(replica.takeSent() == "mg \(key) v f t\r\n")
        replica.reply("EN\r\n")
        bed.run()
        #expect(primary.takeSent() == "delete \(key)\r\n")
        #expect(replica.takeSent() == "delete \(key)\r\n")
    }
}

/// After a node is added, a miss at a key's new owner is filled from its
/// previous owner, which then drops its copy.
@Suite("Proxy warm-up after a scale-out")
struct WarmUpTests {
    @Test("a miss at the new owner is looked up on the previous one, copied over, and dropped there")
    func missAtNewOwnerIsWarmed() throws {
        let bed = ProxyTestBed(nodes: 3, replicas: 1)
        let added = bed.nodes[2]
        // The ring before the new node was added: the first two nodes only.
        var before = bed.context.topology.configuration
        before.nodes = Array(before.nodes.prefix(2))
        let old = try Topology(configuration: before, nodes: [bed.nodes[0].node, bed.nodes[1].node], previous: nil)
        let now = try Topology(configuration: bed.context.topology.configuration, nodes: bed.nodes.map(\.node),
                               previous: .init(ring: old.ring, nodes: old.nodes, warmupUntil: bed.clock + 60_000))
        bed.context.install(now)
        bed.worker.install(now)
        let key = bed.key(ownedBy: added, prefix: "moved")
        let previous = Array(key.utf8).withUnsafeBytes { old.nodes[old.ring.owner(of: $0)] }
        let source = bed.nodes.first { $0.node === previous }!
        let client = bed.connectClient()
        client.send("get \(key)\r\n")
        #expect(added.takeSent() == "get \(key)\r\n")
        added.reply("END\r\n")
        bed.run()
        #expect(source.takeSent() == "mg \(key) v f t\r\n")
        source.reply("VA 2 f9 t100\r\nok\r\n")
        bed.run()
        #expect(added.takeSent() == "ms \(key) 2 F9 T100 ME\r\nok\r\n")
        added.reply("HD\r\n")
        bed.run()
        // The old owner is no replica any more: its copy goes, so a later
        // delete cannot be undone by another warm-up.
        #expect(source.takeSent() == "md \(key)\r\n")
        #expect(added.takeSent() == "get \(key)\r\n")
        added.reply("VALUE \(key) 9 2\r\nok\r\nEND\r\n")
        bed.run()
        #expect(client.takeText() == "VALUE \(key) 9 2\r\nok\r\nEND\r\n")
        #expect(bed.context.total(.warmupHits) == 1)
    }
}
