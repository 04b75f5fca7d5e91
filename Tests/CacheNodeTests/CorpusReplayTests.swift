import CacheStorage
import EventLoop
import Foundation
import Testing
@testable import CacheNode

/// The node's differential corpus (Tests/integration/corpus/*.txt) replayed
/// through the node's request path in process: a `ClientSession` on an
/// embedded connection, the node's `RequestProcessor` and a fresh `ItemStore`
/// per case, a clock moved by hand. Each case must get the bytes memcached
/// 1.6.18 answered to it, as recorded by Tests/integration/record_corpus.py
/// (Fixtures/memcached-corpus.json). No socket, no process, no sleep: the
/// integration suite sends the same cases to the real binary.
@Suite("Corpus replayed in process")
struct CorpusReplayTests {
    @Test("every corpus case gets memcached's reply", arguments: CorpusFixture.cases)
    func replay(_ recorded: CorpusFixture.Case) throws {
        if let reason = CorpusFixture.notReplayed[recorded.name] {
            // Kept visible: the case is run by the integration suite instead.
            #expect(!reason.isEmpty)
            return
        }
        let (reply, closed) = try run(recorded)
        var expected = recorded.differs ? recorded.target + (recorded.sentinel ? Array("VERSION x\r\n".utf8) : [])
                                        : recorded.reply
        var actual = reply
        if closed { actual += Array("<connection closed>".utf8) }
        if recorded.closed && !recorded.differs { expected += Array("<connection closed>".utf8) }
        let want = CorpusFixture.normalize(expected, recorded.norms)
        let got = CorpusFixture.normalize(actual, recorded.norms)
        #expect(CorpusFixture.sameWithinATick(want, got),
                "\(recorded.name):\n--- memcached\n\(CorpusFixture.show(want))\n--- node\n\(CorpusFixture.show(got))")
    }

    /// Sends the case the way the corpus runner does (same splits, waits
    /// turned into clock ticks) and returns what the node wrote back.
    private func run(_ recorded: CorpusFixture.Case) throws -> ([UInt8], Bool) {
        guard case .run(var settings, _) = NodeFlags.parse(["memcluster-node"] + recorded.flags) else {
            throw CorpusFixture.Failure("flags \(recorded.flags) do not parse")
        }
        settings.threads = 1
        let start: Int64 = 1_800_000_000
        let clock = ServerClock(unixNow: start)
        let storage = try ItemStore(configuration: StorageConfiguration(
            memoryLimit: settings.memoryLimit, itemSizeMax: settings.itemSizeMax,
            evictionsEnabled: !settings.evictionsDisabled, casEnabled: settings.casEnabled))
        let context = NodeContext(settings: settings, storage: storage, clock: clock)
        let worker = NodeWorker(loop: try EventLoop(), context: context, counters: context.workerCounters[0])
        let peer = EmbeddedPeer()
        worker.attachClient { client in Connection(embedded: peer, loop: worker.loop, handler: client) }
        var elapsed = 0.0
        for (index, segment) in recorded.segments.enumerated() {
            var lines = segment.lines
            if index == recorded.segments.count - 1 && recorded.sentinel { lines.append(Array("version\r\n".utf8)) }
            for chunk in CorpusFixture.chunks(lines, split: recorded.split) where !peer.isClosed {
                peer.send(chunk)
                // A get or metadump streamed as the socket drains: let it drain.
                while peer.isWaitingForDrain && !peer.isClosed { peer.drain() }
            }
            if segment.wait > 0 {
                elapsed += segment.wait
                clock.tick(unixNow: start + Int64(elapsed.rounded(.up)))
            }
        }
        return (peer.takeWritten(), peer.isClosed)
    }
}
