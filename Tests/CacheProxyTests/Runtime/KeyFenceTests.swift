@testable import CacheProxy
import Testing

/// `KeyFence`: one worker's writes of a stripe at a time, copies never with
/// writes, and a waiting worker gets its turn.
@Suite("Key fence")
struct KeyFenceTests {
    @Test("one worker's writes of a stripe go out together; another worker's wait until all are answered")
    func writesBelongToOneWorker() {
        let fence = KeyFence()
        #expect(fence.tryEnterWrite(7, count: 2, worker: 0))
        #expect(fence.tryEnterWrite(8, worker: 1), "another stripe is free")
        #expect(!fence.tryEnterWrite(7, worker: 1))
        fence.exitWrite(7)
        #expect(!fence.tryEnterWrite(7, worker: 1))
        fence.exitWrite(7)
        #expect(fence.tryEnterWrite(7, worker: 1))
        #expect(!fence.tryEnterWrite(7, worker: 0))
    }

    @Test("a worker kept waiting stops the owner's new writes too, so it cannot be starved")
    func waitingWorkerIsNotStarved() {
        let fence = KeyFence()
        #expect(fence.tryEnterWrite(3, worker: 0))
        #expect(fence.tryEnterWrite(3, worker: 0), "no one waits: the owner's writes go out at once")
        #expect(!fence.tryEnterWrite(3, worker: 1))
        #expect(!fence.tryEnterWrite(3, worker: 0), "worker 1 waits: worker 0 queues behind it")
        fence.extendWrite(3, count: 1)    // a copy of a held write's result still goes out
        fence.exitWrite(3)
        fence.exitWrite(3)
        #expect(!fence.tryEnterWrite(3, worker: 1))
        fence.exitWrite(3)
        #expect(fence.tryEnterWrite(3, worker: 1))
        #expect(fence.tryEnterWrite(3, worker: 1))
    }

    @Test("copies and writes of a stripe exclude each other")
    func copiesExcludeWrites() {
        let fence = KeyFence()
        #expect(fence.tryEnterCopy(5))
        #expect(fence.tryEnterCopy(5))
        #expect(!fence.tryEnterWrite(5, worker: 0))
        fence.exitCopy(5)
        fence.exitCopy(5)
        #expect(fence.tryEnterWrite(5, worker: 0))
        #expect(!fence.tryEnterCopy(5))
        fence.exitWrite(5)
        #expect(fence.tryEnterCopy(5))
    }
}
