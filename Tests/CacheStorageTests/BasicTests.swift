import CacheStorage
import Testing

@Suite("Store and look up")
struct BasicTests {
    @Test func roundTripBinaryKeysAndValues() throws {
        let store = try ItemStore(configuration: .small(8))
        let keys: [[UInt8]] = [
            [0], [0, 0], [0xFF, 0x00, 0x0D, 0x0A], bytes("plain"), Array(repeating: 0xAB, count: 250),
            (0..<255).map { UInt8($0) }, [],
        ]
        for (index, key) in keys.enumerated() {
            let value = (0..<(index * 37)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) } + [0x0D, 0x0A, 0]
            let cas = try store.set(key, value, flags: UInt32(0xDEAD_0000 + index), expiry: 0).get()
            #expect(cas > 0)
            #expect(store.get(key) == .hit(Fetched(value: value, flags: UInt32(0xDEAD_0000 + index), cas: cas, expiry: 0)))
        }
        #expect(store.get([0, 0, 0]) == .miss)
        #expect(store.get(bytes("plai")) == .miss)
        #expect(store.statistics().currentItems == keys.count)
        for key in keys {
            #expect(store.delete(key))
            #expect(store.get(key) == .miss)
            #expect(!store.delete(key))
        }
        let statistics = store.statistics()
        #expect(statistics.currentItems == 0)
        #expect(statistics.bytes == 0)
        #expect(statistics.totalItems == keys.count)
        #expect(store.validate() == nil)
    }

    @Test func emptyValueAndZeroFlags() throws {
        let store = try ItemStore(configuration: .small(8))
        _ = try store.set(bytes("empty"), []).get()
        #expect(store.value(bytes("empty")) == [])
    }

    @Test func keyLongerThan255IsTooLarge() throws {
        let store = try ItemStore(configuration: .small(8))
        #expect(throws: AllocationFailure.tooLarge) { try store.set(Array(repeating: 1, count: 256), [1]).get() }
    }

    @Test func replaceExistingKey() throws {
        let store = try ItemStore(configuration: .small(8))
        let first = try store.set(bytes("k"), Array(repeating: 1, count: 500), flags: 1).get()
        let second = try store.set(bytes("k"), [9, 9, 9], flags: 2).get()
        #expect(second > first)
        #expect(store.get(bytes("k")) == .hit(Fetched(value: [9, 9, 9], flags: 2, cas: second, expiry: 0)))
        let statistics = store.statistics()
        #expect(statistics.currentItems == 1)
        #expect(statistics.totalItems == 2)
        #expect(statistics.bytes == 40) // 32 header + 1 key + 3 value = 36, rounded to 8
        #expect(statistics.deadBytes == 536) // the replaced item: 32 + 1 + 500 -> 536
        #expect(store.validate() == nil)
    }

    @Test func itemFieldsAndMetaBits() throws {
        let store = try ItemStore(configuration: .small(8))
        let key = bytes("meta")
        _ = try store.set(key, [1, 2, 3], flags: 7, expiry: 500, now: 10).get()
        key.withUnsafeBytes { keyBytes in
            let hash = ItemStore.hash(keyBytes)
            store.withShard(hash: hash) { shard in
                guard case .hit(let item) = shard.lookup(key: keyBytes, hash: hash, now: 20, bump: false, fetch: false) else {
                    Issue.record("miss")
                    return
                }
                #expect(!item.wasFetched)
                #expect(item.lastAccess == 10) // not bumped
                #expect(Array(item.key) == key)
                #expect(item.totalSize == 40)
                item.isStale = true
                item.winTokenSent = true
                item.expiry = 900
                item.clientFlags = 8
            }
            store.withShard(hash: hash) { shard in
                guard case .hit(let item) = shard.lookup(key: keyBytes, hash: hash, now: 30) else {
                    Issue.record("miss")
                    return
                }
                #expect(item.wasFetched)
                #expect(item.lastAccess == 30)
                #expect(item.isStale && item.winTokenSent)
                #expect(item.expiry == 900 && item.clientFlags == 8)
                item.isStale = false
                #expect(!item.isStale && item.winTokenSent)
            }
        }
    }

    @Test func unlinkedItemIsDroppedAtClosureEnd() throws {
        let store = try ItemStore(configuration: .small(8))
        let key = bytes("never-linked")
        key.withUnsafeBytes { keyBytes in
            let hash = ItemStore.hash(keyBytes)
            store.withShard(hash: hash) { shard in
                _ = shard.allocate(key: keyBytes, valueLength: 100, clientFlags: 0, expiry: 0, now: 1)
                _ = shard.allocate(key: keyBytes, valueLength: 300 << 10, clientFlags: 0, expiry: 0, now: 1) // large
            }
        }
        #expect(store.get(key) == .miss)
        let statistics = store.statistics()
        #expect(statistics.currentItems == 0)
        #expect(statistics.largeItems == 0)
        #expect(statistics.largeItemBytes == 0)
        #expect(store.validate() == nil)
    }

    @Test func itemSizeMaxIsAPhysicalGuard() throws {
        let store = try ItemStore(configuration: .small(8, itemSizeMax: 1000))
        // 32 header + 3 key + 965 value = 1000: fits exactly.
        _ = try store.set(bytes("abc"), Array(repeating: 1, count: 965)).get()
        #expect(throws: AllocationFailure.tooLarge) { try store.set(bytes("abc"), Array(repeating: 1, count: 966)).get() }
    }
}
