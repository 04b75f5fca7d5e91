import CacheStorage
import EventLoop
import Testing
@testable import CacheNode

/// A client session whose output backed up: what it answers once the socket
/// drained must be written without waiting for another read.
@Suite("Output that backed up")
struct OutputDrainTests {
    /// 17 values of 64 KiB pass the 1 MiB output limit after the 16th: the
    /// 17th, END and the pipelined `mn` are answered when the socket drains,
    /// and must be written then, with no read to come (16: the limit is
    /// reached with the last value; 50: several rounds). test_fuzz.py's
    /// multi-gets of 1,500-2,000 names once waited for ever here.
    @Test("the rest of a multi-get and the requests after it are written once the socket drains",
          arguments: [17, 50, 16])
    func restIsWritten(names: Int) throws {
        guard case .run(var settings, _) = NodeFlags.parse(["memcluster-node"]) else {
            Issue.record("default flags do not parse")
            return
        }
        settings.threads = 1
        let clock = ServerClock(unixNow: 1_800_000_000)
        let storage = try ItemStore(configuration: StorageConfiguration(
            memoryLimit: settings.memoryLimit, itemSizeMax: settings.itemSizeMax,
            evictionsEnabled: true, casEnabled: true))
        let context = NodeContext(settings: settings, storage: storage, clock: clock)
        let worker = NodeWorker(loop: try EventLoop(), context: context, counters: context.workerCounters[0])
        let peer = EmbeddedPeer()
        var connection: Connection?
        _ = worker.attachClient { client in
            let made = Connection(embedded: peer, loop: worker.loop, handler: client)
            connection = made
            return made
        }
        let value = [UInt8](repeating: UInt8(ascii: "v"), count: 65536)
        peer.send(Array("set big 0 0 65536\r\n".utf8) + value + Array("\r\n".utf8))
        #expect(peer.takeWritten() == Array("STORED\r\n".utf8))

        peer.room = 0          // the socket is full until the test drains it
        peer.send(Array(("get" + String(repeating: " big", count: names) + "\r\nmn\r\n").utf8))
        var drains = 0
        while let connection, connection.isWaitingForWritable, drains < 1000 {
            peer.drain()
            drains += 1
        }
        let unit = Array("VALUE big 0 65536\r\n".utf8) + value + Array("\r\n".utf8)
        let expected = Array([[UInt8]](repeating: unit, count: names).joined()) + Array("END\r\nMN\r\n".utf8)
        let written = peer.takeWritten()
        let same = written == expected      // (compared apart: a failure would print megabytes)
        let ending = String(decoding: written.suffix(24), as: UTF8.self).debugDescription
        #expect(same, "\(written.count) of \(expected.count) bytes written after \(drains) drains, ending \(ending)")
    }
}
