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

    @Test("a miss at a refilling primary is looked up on the replica, copied back with add, checked, then read again")
    func missIsRefilled() {
        let (bed, key, primary, replica) = refilling()
        let client = bed.connectClient()
        client.send("get \(key)\r\n")
        #expect(primary.takeSent() == "get \(key)\r\n")
        primary.reply("END\r\n")
        bed.run()
        #expect(replica.takeSent() == "mg \(key) v f t c\r\n")
        replica.reply("VA 1 f3 t-1 c7\r\nx\r\n")
        bed.run()
        // The copy goes to the other live replicas, stored only where the key is missing.
        #expect(primary.takeSent() == "ms \(key) 1 F3 T0 ME c\r\nx\r\n")
        #expect(replica.takeSent() == "")
        primary.reply("HD c12\r\n")
        bed.run()
        // The source still holds what was copied: the copy stays.
        #expect(replica.takeSent() == "mg \(key) c\r\n")
        replica.reply("HD c7\r\n")
        bed.run()
        #expect(primary.takeSent() == "get \(key)\r\n")
        primary.reply("VALUE \(key) 3 1\r\nx\r\nEND\r\n")
        bed.run()
        #expect(client.takeText() == "VALUE \(key) 3 1\r\nx\r\nEND\r\n")
        #expect(bed.context.total(.warmupHits) == 1)
    }

    @Test("a copy whose source changed meanwhile (another proxy's delete) is taken back, by its own CAS")
    func copyOfChangedSourceIsUndone() {
        let (bed, key, primary, replica) = refilling()
        let client = bed.connectClient()
        client.send("get \(key)\r\n")
        _ = primary.takeSent()
        primary.reply("END\r\n")
        bed.run()
        #expect(replica.takeSent() == "mg \(key) v f t c\r\n")
        replica.reply("VA 1 f0 t-1 c7\r\nx\r\n")
        bed.run()
        #expect(primary.takeSent() == "ms \(key) 1 F0 T0 ME c\r\nx\r\n")
        primary.reply("HD c12\r\n")
        bed.run()
        #expect(replica.takeSent() == "mg \(key) c\r\n")
        replica.reply("EN\r\n")                       // deleted since it was read
        bed.run()
        #expect(primary.takeSent() == "md \(key) C12\r\nget \(key)\r\n")
        primary.reply("HD\r\nEND\r\n")
        bed.run()
        #expect(client.takeText() == "END\r\n", "a miss, never the deleted value")
        #expect(bed.context.total(.warmupMisses) == 1)
    }

    @Test("a delete of a key being copied is not sent before the copy is done, then reaches every replica")
    func deleteWaitsForCopy() {
        let (bed, key, primary, replica) = refilling()
        let reader = bed.connectClient()
        let deleter = bed.connectClient()
        reader.send("get \(key)\r\n")
        _ = primary.takeSent()
        primary.reply("END\r\n")
        bed.run()
        #expect(replica.takeSent() == "mg \(key) v f t c\r\n")   // the reader's copy holds the key's stripe
        deleter.send("delete \(key)\r\n")
        // The delete first brings the key to its refilling primary (a copy of its own)...
        #expect(replica.takeSent() == "mg \(key) v f t c\r\n")
        #expect(primary.takeSent() == "")
        replica.reply("VA 1 f0 t-1 c7\r\nx\r\nVA 1 f0 t-1 c7\r\nx\r\n")
        bed.run()
        #expect(primary.takeSent() == String(repeating: "ms \(key) 1 F0 T0 ME c\r\nx\r\n", count: 2))
        primary.reply("HD c12\r\nNS\r\n")
        bed.run()
        // ...and waits while the reader's copy is being checked.
        #expect(replica.takeSent() == "mg \(key) c\r\n")
        bed.worker.retryFencedWrites()
        bed.run()
        #expect(!primary.takeSent().contains("delete"), "the reader's copy is not done")
        replica.reply("HD c7\r\n")
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
        #expect(replica.takeSent() == "mg \(key) v f t c\r\n")
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
        #expect(replica.takeSent() == "mg \(key) v f t c\r\n")
        client.peer.reset()
        bed.run()
        replica.reply("VA 1 f0 t-1 c7\r\nx\r\n")
        bed.run()
        _ = primary.takeSent()
        primary.reply("HD c12\r\n")
        bed.run()
        #expect(replica.takeSent() == "mg \(key) c\r\n")
        replica.reply("HD c7\r\n")
        bed.run()
        #expect(primary.takeSent() == "", "the abandoned read is not sent again")
        // The stripe was given back: a delete goes out as soon as its own move is done.
        let writer = bed.connectClient()
        writer.send("delete \(key)\r\n")
        #expect(replica.takeSent() == "mg \(key) v f t c\r\n")
        replica.reply("EN\r\n")
        bed.run()
        #expect(primary.takeSent() == "delete \(key)\r\n")
        #expect(replica.takeSent() == "delete \(key)\r\n")
    }
}

/// During a membership change's warming phase, a miss at a key's new owner
/// is filled from its previous owner, which keeps its copy (it still gets
/// writes until the change is over).
@Suite("Proxy warm-up during a membership change")
struct WarmUpTests {
    /// A bed whose membership just grew from its first two nodes to three,
    /// `phase` into the change.
    private func grown(phaseAt elapsed: Int64, settle: Int64 = 1000, warmup: Int64 = 60_000) throws
        -> (ProxyTestBed, old: Topology) {
        let bed = ProxyTestBed(nodes: 3, replicas: 1)
        var before = bed.context.topology.configuration
        before.nodes = Array(before.nodes.prefix(2))
        let old = try Topology(configuration: before, nodes: [bed.nodes[0].node, bed.nodes[1].node])
        let transition = Transition(earlier: old.asEarlier, learnedAt: bed.clock - elapsed, settleMilliseconds: settle,
                                    warmupMilliseconds: warmup)
        let now = try Topology(configuration: bed.context.topology.configuration, nodes: bed.nodes.map(\.node),
                               transition: transition)
        bed.context.install(now)
        bed.worker.install(now)
        return (bed, old)
    }

    /// A key that moved to the added node, its previous owner, and a client,
    /// `elapsed` ms into the change.
    private func movedKey(phaseAt elapsed: Int64) throws
        -> (bed: ProxyTestBed, key: String, added: FakeNode, source: FakeNode, client: FakeClient) {
        let (bed, old) = try grown(phaseAt: elapsed)
        let added = bed.nodes[2]
        let key = bed.key(ownedBy: added, prefix: "moved")
        let previous = Array(key.utf8).withUnsafeBytes { old.nodes[old.ring.owner(of: $0)] }
        let source = bed.nodes.first { $0.node === previous }!
        return (bed, key, added, source, bed.connectClient())
    }

    @Test("warming: a miss at the new owner is looked up on the previous one and copied over; the source keeps it")
    func missAtNewOwnerIsWarmed() throws {
        let (bed, key, added, source, client) = try movedKey(phaseAt: 1500)
        client.send("get \(key)\r\n")
        #expect(added.takeSent() == "get \(key)\r\n")
        added.reply("END\r\n")
        bed.run()
        #expect(source.takeSent() == "mg \(key) v f t c\r\n")
        source.reply("VA 2 f9 t100 c5\r\nok\r\n")
        bed.run()
        #expect(added.takeSent() == "ms \(key) 2 F9 T100 ME c\r\nok\r\n")
        added.reply("HD c40\r\n")
        bed.run()
        #expect(source.takeSent() == "mg \(key) c\r\n")
        source.reply("HD c5\r\n")
        bed.run()
        #expect(added.takeSent() == "get \(key)\r\n")
        added.reply("VALUE \(key) 9 2\r\nok\r\nEND\r\n")
        bed.run()
        #expect(client.takeText() == "VALUE \(key) 9 2\r\nok\r\nEND\r\n")
        #expect(source.takeSent() == "", "the old owner keeps its copy while it still gets writes")
        #expect(bed.context.total(.warmupHits) == 1)
    }

    @Test("guarded: the old owner serves; a write goes there and deletes the key at the new owner")
    func guardedPhase() throws {
        let (bed, key, added, source, client) = try movedKey(phaseAt: 100)
        client.send("get \(key)\r\n")
        #expect(source.takeSent() == "get \(key)\r\n")
        #expect(added.takeSent() == "")
        source.reply("END\r\n")
        bed.run()
        #expect(client.takeText() == "END\r\n")
        client.send("set \(key) 0 0 1\r\nv\r\n")
        #expect(source.takeSent() == "set \(key) 0 0 1\r\nv\r\n")
        #expect(added.takeSent() == "md \(key)\r\n")
        source.reply("STORED\r\n")
        bed.run()
        #expect(client.takeText() == "", "the delete at the new owner is awaited")
        added.reply("NF\r\n")
        bed.run()
        #expect(client.takeText() == "STORED\r\n")
    }

    @Test("warming, but the added node is still being flushed after joining: the old owner serves")
    func joiningNodeNotFlushedYet() throws {
        let (bed, key, added, source, client) = try movedKey(phaseAt: 1500)
        #expect(added.node.transition(from: .up, to: .recovering))
        client.send("get \(key)\r\n")
        #expect(source.takeSent() == "get \(key)\r\n")
        #expect(added.takeSent() == "")
        source.reply("VALUE \(key) 0 1\r\nv\r\nEND\r\n")
        bed.run()
        #expect(client.takeText() == "VALUE \(key) 0 1\r\nv\r\nEND\r\n")
        #expect(added.node.transition(from: .recovering, to: .up))
        client.send("get \(key)\r\n")
        #expect(added.takeSent() == "get \(key)\r\n", "flushed: the new owner serves")
    }

    @Test("warming and settling: writes go to the new and the old owner; the new one answers")
    func unionWrites() throws {
        for elapsed: Int64 in [1500, 61_500] {
            let (bed, key, added, source, client) = try movedKey(phaseAt: elapsed)
            client.send("set \(key) 0 0 1\r\nv\r\n")
            #expect(added.takeSent() == "set \(key) 0 0 1\r\nv\r\n")
            #expect(source.takeSent() == "set \(key) 0 0 1\r\nv\r\n")
            added.reply("STORED\r\n")
            source.reply("NOT_STORED\r\n")
            bed.run()
            #expect(client.takeText() == "STORED\r\n")
        }
    }

    @Test("settling: a miss at the new owner stays a miss (no copy: a slower proxy may stop writing the old owner first)")
    func settlingCopiesNothing() throws {
        let (bed, key, added, _, client) = try movedKey(phaseAt: 61_500)
        client.send("get \(key)\r\n")
        added.reply("END\r\n")
        bed.run()
        #expect(client.takeText() == "END\r\n")
        for node in bed.nodes { #expect(node.takeSent().contains("mg") == false) }
    }

    @Test("finished: a node that left the ring gets nothing more (it is flushed should it join again)")
    func finishedLeavesDepartedNodeAlone() throws {
        let bed = ProxyTestBed(nodes: 3, replicas: 1)
        let old = bed.context.topology
        let key = bed.key(ownedBy: bed.nodes[2], prefix: "left")   // under the old ring
        var after = old.configuration
        after.nodes = Array(after.nodes.prefix(2))
        let transition = Transition(earlier: old.asEarlier, learnedAt: bed.clock - 70_000, settleMilliseconds: 1000,
                                    warmupMilliseconds: 60_000)
        let now = try Topology(configuration: after, nodes: [bed.nodes[0].node, bed.nodes[1].node], transition: transition)
        bed.context.install(now)
        bed.worker.install(now)
        let client = bed.connectClient()
        client.send("delete \(key)\r\n")
        bed.run()
        #expect(bed.nodes[2].takeSent() == "")
        #expect(bed.nodes[0].takeSent() + bed.nodes[1].takeSent() == "delete \(key)\r\n")
    }

    @Test("finished: writes go to the new owner and delete the old owner's copy")
    func finishedInvalidatesOldOwner() throws {
        let (bed, key, added, source, client) = try movedKey(phaseAt: 70_000)
        client.send("delete \(key)\r\n")
        #expect(added.takeSent() == "delete \(key)\r\n")
        #expect(source.takeSent() == "md \(key)\r\n")
        added.reply("DELETED\r\n")
        source.reply("HD\r\n")
        bed.run()
        #expect(client.takeText() == "DELETED\r\n")
        client.send("get \(key)\r\n")
        #expect(added.takeSent() == "get \(key)\r\n")
        #expect(source.takeSent() == "")
    }
}
