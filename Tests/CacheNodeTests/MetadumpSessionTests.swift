import CacheStorage
import EventLoop
import Foundation
import Testing
@testable import CacheNode

/// `lru_crawler metadump` through a ClientSession on an embedded connection:
/// the dump stops at the output limit, waits for the "socket" to drain, and
/// goes on from its cursor, with requests pipelined after it answered after
/// its END.
@Suite("Metadump streamed through a session")
struct MetadumpSessionTests {
    final class Node {
        let context: NodeContext
        let worker: NodeWorker
        let peer = EmbeddedPeer()

        init(flags: [String] = []) throws {
            guard case .run(var settings, _) = NodeFlags.parse(["memcluster-node"] + flags) else {
                throw CorpusFixture.Failure("flags \(flags) do not parse")
            }
            settings.threads = 1
            let clock = ServerClock(unixNow: 1_800_000_000)
            let storage = try ItemStore(configuration: StorageConfiguration(memoryLimit: settings.memoryLimit))
            context = NodeContext(settings: settings, storage: storage, clock: clock)
            worker = NodeWorker(loop: try EventLoop(), context: context, counters: context.workerCounters[0])
            _ = worker.attachClient { client in Connection(embedded: peer, loop: worker.loop, handler: client) }
        }

        func fill(_ count: Int) {
            var batch = ""
            for index in 0..<count {
                batch += "set key:\(index) 0 0 1 noreply\r\nx\r\n"
                if index % 1000 == 999 || index == count - 1 {
                    peer.send(Array(batch.utf8))
                    batch = ""
                }
            }
            #expect(peer.takeWritten().isEmpty)
        }
    }

    static func keys(in dump: [UInt8]) -> [String] {
        String(decoding: dump, as: UTF8.self).split(separator: "\n").compactMap { line in
            guard line.hasPrefix("key=") else { return nil }
            return String(line.dropFirst(4).prefix { $0 != " " }).removingPercentEncoding
        }
    }

    @Test func aDumpLargerThanTheOutputLimitGoesOnAsTheSocketDrains() throws {
        let node = try Node()
        let count = 40_000
        node.fill(count)
        // A "socket" that takes 64 KiB at a time.
        node.peer.room = 64 << 10
        node.peer.send(Array("lru_crawler metadump all\r\nget key:7\r\n".utf8))
        var written: [UInt8] = []
        var drains = 0
        while node.peer.isWaitingForDrain && drains < 10_000 {
            written += node.peer.takeWritten()
            node.peer.drain(room: 64 << 10)
            drains += 1
        }
        written += node.peer.takeWritten()
        let text = String(decoding: written, as: UTF8.self)
        #expect(text.hasSuffix("END\r\nVALUE key:7 0 1\r\nx\r\nEND\r\n"))
        let listed = Self.keys(in: written)
        #expect(listed.count == count)
        #expect(Set(listed) == Set((0..<count).map { "key:\($0)" }))
        // About 2.7 MB of lines, 64 KiB a drain.
        #expect(drains > 20)
    }

    @Test func aClientThatDoesNotReadHoldsOneOutputBuffer() throws {
        let node = try Node()
        node.fill(40_000)
        node.peer.room = 0
        node.peer.send(Array("lru_crawler metadump hash\r\n".utf8))
        // Nothing is read, so the dump waits after its first turn.
        #expect(node.peer.isWaitingForDrain)
        #expect(node.peer.takeWritten().isEmpty)
        var drains = 0
        repeat {
            node.peer.drain(room: nil)
            drains += 1
        } while node.peer.isWaitingForDrain && drains < 10_000
        #expect(Self.keys(in: node.peer.takeWritten()).count == 40_000)
    }

    @Test func anItemStoredMidDumpDoesNotRepeatOthers() throws {
        let node = try Node()
        node.fill(20_000)
        node.peer.room = 16 << 10
        node.peer.send(Array("lru_crawler metadump all\r\n".utf8))
        var written: [UInt8] = []
        var round = 0
        while node.peer.isWaitingForDrain && round < 100_000 {
            written += node.peer.takeWritten()
            // Another client's writes between two turns (straight to the store).
            let key = Array("late:\(round)".utf8)
            key.withUnsafeBytes { bytes in
                let hash = ItemStore.hash(bytes)
                node.context.storage.withShard(hash: hash) { shard in
                    if case .success(let item) = shard.allocate(key: bytes, valueLength: 1, clientFlags: 0, expiry: 0,
                                                                now: node.context.clock.now) {
                        shard.link(item, hash: hash, now: node.context.clock.now)
                    }
                }
            }
            node.peer.drain(room: 16 << 10)
            round += 1
        }
        written += node.peer.takeWritten()
        let listed = Self.keys(in: written)
        #expect(Set(listed).count == listed.count)
        #expect(Set((0..<20_000).map { "key:\($0)" }).isSubset(of: Set(listed)))
        #expect(round > 10)
    }
}
