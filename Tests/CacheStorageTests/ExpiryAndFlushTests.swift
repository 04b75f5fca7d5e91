import CacheStorage
import Testing

@Suite("Expiry and flush")
struct ExpiryAndFlushTests {
    @Test func expiresAtTheExactSecond() throws {
        let store = try ItemStore(configuration: .small(8))
        _ = try store.set(bytes("t"), [1], expiry: 100, now: 90).get()
        #expect(store.value(bytes("t"), now: 99) == [1])
        #expect(store.get(bytes("t"), now: 100) == .expired)
        // Unlinked by that lookup: now simply gone.
        #expect(store.get(bytes("t"), now: 100) == .miss)
        #expect(store.statistics().currentItems == 0)
        #expect(store.validate() == nil)
    }

    @Test func zeroExpiryNeverExpires() throws {
        let store = try ItemStore(configuration: .small(8))
        _ = try store.set(bytes("forever"), [1], expiry: 0, now: 1).get()
        #expect(store.value(bytes("forever"), now: .max) == [1])
    }

    @Test func touchMovesExpiry() throws {
        let store = try ItemStore(configuration: .small(8))
        let key = bytes("touch")
        _ = try store.set(key, [1], expiry: 100, now: 90).get()
        key.withUnsafeBytes { keyBytes in
            let hash = ItemStore.hash(keyBytes)
            store.withShard(hash: hash) { shard in
                if case .hit(let item) = shard.lookup(key: keyBytes, hash: hash, now: 95) { item.expiry = 200 }
            }
        }
        #expect(store.value(key, now: 150) == [1])
        #expect(store.get(key, now: 200) == .expired)
    }

    @Test(arguments: [true, false])
    func flushNowHidesEverythingStoredBeforeItEvenInTheSameSecond(cas: Bool) throws {
        let store = try ItemStore(configuration: .small(8, cas: cas))
        _ = try store.set(bytes("a"), [1], now: 10).get()
        _ = try store.set(bytes("b"), [2], now: 10).get()
        store.flush(boundary: 10, now: 10)
        _ = try store.set(bytes("c"), [3], now: 10).get()
        #expect(store.get(bytes("a"), now: 10) == .flushed)
        #expect(store.get(bytes("a"), now: 10) == .miss)
        #expect(store.get(bytes("b"), now: 11) == .flushed)
        #expect(store.value(bytes("c"), now: 10) == [3])
        #expect(store.value(bytes("c"), now: 11) == [3])
        #expect(store.validate() == nil)
    }

    @Test func delayedFlushTakesEffectAtItsBoundary() throws {
        let store = try ItemStore(configuration: .small(8))
        _ = try store.set(bytes("old"), [1], now: 10).get()
        store.flush(boundary: 12, now: 10) // flush_all 2
        #expect(store.value(bytes("old"), now: 11) == [1])
        _ = try store.set(bytes("before-deadline"), [2], now: 11).get()
        #expect(store.value(bytes("before-deadline"), now: 11) == [2])
        // The deadline: everything stored before it vanishes...
        #expect(store.get(bytes("old"), now: 12) == .flushed)
        #expect(store.get(bytes("before-deadline"), now: 12) == .flushed)
        // ...and what is stored from then on survives.
        _ = try store.set(bytes("after"), [3], now: 12).get()
        #expect(store.value(bytes("after"), now: 12) == [3])
        #expect(store.value(bytes("after"), now: 20) == [3])
    }

    @Test func delayedFlushAppliesEvenIfTheFirstOperationComesLate() throws {
        let store = try ItemStore(configuration: .small(8))
        _ = try store.set(bytes("old"), [1], now: 10).get()
        store.flush(boundary: 15, now: 10)
        // Nothing happens until t=40; then a store comes first: "old" must still be gone.
        _ = try store.set(bytes("new"), [2], now: 40).get()
        #expect(store.get(bytes("old"), now: 40) == .flushed)
        #expect(store.value(bytes("new"), now: 40) == [2])
    }

    @Test func laterFlushReplacesAPendingOne() throws {
        let store = try ItemStore(configuration: .small(8))
        _ = try store.set(bytes("x"), [1], now: 10).get()
        store.flush(boundary: 12, now: 10)
        store.flush(boundary: 20, now: 11)
        #expect(store.value(bytes("x"), now: 15) == [1])
        #expect(store.get(bytes("x"), now: 20) == .flushed)
    }

    @Test func reclaimerAppliesFlushToo() throws {
        let store = try ItemStore(configuration: .small(8))
        for index in 0..<100 { _ = try store.set(bytes("k\(index)"), [1], now: 5).get() }
        store.flush(boundary: 5, now: 5)
        #expect(store.reclaimExpired(now: 6, limit: 1000) == 100)
        let statistics = store.statistics()
        #expect(statistics.currentItems == 0)
        #expect(statistics.reclaimed == 100)
        #expect(statistics.expiredUnfetched == 100)
        #expect(statistics.crawlerReclaimed == 100)
        #expect(statistics.crawlerItemsChecked == 100)
    }

    @Test func reclaimerCountsWhatItChecksAndReclaims() throws {
        let store = try ItemStore(configuration: .small(8))
        for index in 0..<30 { _ = try store.set(bytes("e\(index)"), [1], expiry: 8, now: 5).get() }
        for index in 0..<10 { _ = try store.set(bytes("l\(index)"), [1], now: 5).get() }
        #expect(store.reclaimExpired(now: 6, limit: 1000) == 0)
        #expect(store.statistics().crawlerItemsChecked == 40)
        #expect(store.reclaimExpired(now: 9, limit: 1000) == 30)
        let statistics = store.statistics()
        #expect(statistics.crawlerReclaimed == 30)
        #expect(statistics.crawlerItemsChecked == 80)
        store.resetStatistics()
        #expect(store.statistics().crawlerReclaimed == 0 && store.statistics().crawlerItemsChecked == 0)
    }

    @Test func explicitCasItemsFallBackToTimeForFlush() throws {
        let store = try ItemStore(configuration: .small(8))
        let key = bytes("e")
        func setWithExplicitCas(_ token: UInt64, now: ServerTime) {
            key.withUnsafeBytes { keyBytes in
                let hash = ItemStore.hash(keyBytes)
                store.withShard(hash: hash) { shard in
                    guard case .success(let item) = shard.allocate(key: keyBytes, valueLength: 1, clientFlags: 0, expiry: 0, now: now) else { return }
                    shard.link(item, hash: hash, now: now)
                    item.cas = token
                }
            }
        }
        _ = try store.set(bytes("filler"), [0], now: 1).get()
        store.flush(boundary: 10, now: 10)
        // Stored a second after the flush with a token far below the flush sequence: visible.
        setWithExplicitCas(1, now: 11)
        guard case .hit(let fetched) = store.get(key, now: 11) else {
            Issue.record("explicit-CAS item stored after a flush must be visible")
            return
        }
        #expect(fetched.cas == 1)
        // A flush after it hides it.
        store.flush(boundary: 12, now: 12)
        #expect(store.get(key, now: 12) == .flushed)
    }
}

@Suite("CAS")
struct CasTests {
    @Test func uniqueAndMonotonic() throws {
        let store = try ItemStore(configuration: .small(8))
        var previous: UInt64 = 0
        var seen = Set<UInt64>()
        for index in 0..<2000 {
            let cas = try store.set(bytes("key-\(index % 300)"), [UInt8(truncatingIfNeeded: index)]).get()
            #expect(cas > previous)
            previous = cas
            seen.insert(cas)
        }
        #expect(seen.count == 2000)
        guard case .hit(let fetched) = store.get(bytes("key-\(1999 % 300)")) else {
            Issue.record("miss")
            return
        }
        #expect(fetched.cas == previous)
    }

    @Test func assignNewCas() throws {
        let store = try ItemStore(configuration: .small(8))
        let key = bytes("incr")
        let first = try store.set(key, bytes("10")).get()
        key.withUnsafeBytes { keyBytes in
            let hash = ItemStore.hash(keyBytes)
            store.withShard(hash: hash) { shard in
                guard case .hit(let item) = shard.lookup(key: keyBytes, hash: hash, now: 2) else { return }
                // An in-place incr: rewrite the digits, then a new CAS.
                item.value[1] = UInt8(ascii: "1")
                let second = shard.assignNewCas(item)
                #expect(second > first)
                #expect(item.cas == second)
            }
        }
        #expect(store.value(key) == bytes("11"))
    }

    @Test func uniqueAcrossThreads() throws {
        let store = try ItemStore(configuration: .small(32))
        final class Results: @unchecked Sendable { var perThread = [[UInt64]](repeating: [], count: 4) }
        let results = Results()
        runThreads(4) { thread in
            var local: [UInt64] = []
            for index in 0..<2000 {
                if case .success(let cas) = store.set(bytes("t\(thread)-\(index % 100)"), [1]) { local.append(cas) }
            }
            results.perThread[thread] = local
        }
        let all = results.perThread.flatMap { $0 }
        #expect(all.count == 8000)
        #expect(Set(all).count == 8000)
        for list in results.perThread { #expect(list == list.sorted()) }
    }

    @Test func explicitCasSetBeforeLinkIsKept() throws {
        let store = try ItemStore(configuration: .small(8))
        let key = bytes("token")
        let linked: UInt64 = key.withUnsafeBytes { keyBytes in
            let hash = ItemStore.hash(keyBytes)
            return store.withShard(hash: hash) { shard in
                guard case .success(let item) = shard.allocate(key: keyBytes, valueLength: 1, clientFlags: 0, expiry: 0, now: 1) else { return 0 }
                item.cas = 123_456
                return shard.link(item, hash: hash, now: 1)
            }
        }
        #expect(linked == 123_456)
        guard case .hit(let fetched) = store.get(key) else {
            Issue.record("miss")
            return
        }
        #expect(fetched.cas == 123_456)
        // A plain store afterwards draws a fresh sequence number again.
        let next = try store.set(key, [2]).get()
        #expect(next != 123_456 && next > 0)
    }

    @Test func disabledCasReadsZero() throws {
        let store = try ItemStore(configuration: .small(8, cas: false))
        let key = bytes("nocas")
        #expect(try store.set(key, [1]).get() == 0)
        #expect(try store.set(key, [2]).get() == 0)
        guard case .hit(let fetched) = store.get(key) else {
            Issue.record("miss")
            return
        }
        #expect(fetched.cas == 0)
        key.withUnsafeBytes { keyBytes in
            let hash = ItemStore.hash(keyBytes)
            store.withShard(hash: hash) { shard in
                guard case .hit(let item) = shard.lookup(key: keyBytes, hash: hash, now: 2) else { return }
                #expect(shard.assignNewCas(item) == 0)
                #expect(item.cas == 0)
            }
        }
    }
}
