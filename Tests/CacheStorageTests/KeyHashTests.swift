import CacheStorage
import Testing

@Suite("Key hash")
struct KeyHashTests {
    func hash(_ key: [UInt8]) -> UInt64 { key.withUnsafeBytes { ItemStore.hash($0) } }

    @Test func deterministicAndLengthSensitive() {
        #expect(hash(bytes("abc")) == hash(bytes("abc")))
        #expect(hash([]) != hash([0]))
        #expect(hash([0]) != hash([0, 0]))
        #expect(hash(Array(repeating: 0, count: 8)) != hash(Array(repeating: 0, count: 9)))
        #expect(hash(bytes("key:00000001")) != hash(bytes("key:00000002")))
    }

    @Test func everyLengthUpTo64ReadsOnlyItsBytes() {
        // Same prefix inside a bigger buffer with different garbage after it: same hash.
        for length in 0...64 {
            let a = (0..<length).map { UInt8(truncatingIfNeeded: $0 * 7) } + Array(repeating: 0xAA, count: 16)
            let b = (0..<length).map { UInt8(truncatingIfNeeded: $0 * 7) } + Array(repeating: 0x55, count: 16)
            let ha = a.withUnsafeBytes { ItemStore.hash(UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
            let hb = b.withUnsafeBytes { ItemStore.hash(UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
            #expect(ha == hb)
        }
    }

    @Test func sequentialKeysSpreadOverShardsAndBuckets() {
        var shards = [Int](repeating: 0, count: 16)
        var buckets = [Int](repeating: 0, count: 1024)
        let count = 64_000
        for index in 0..<count {
            let h = hash(bytes("user:\(index)"))
            shards[Int(h >> 60)] += 1
            buckets[Int(h & 1023)] += 1
        }
        // Expected 4000 per shard and 62.5 per bucket; allow generous statistical slack.
        for n in shards { #expect(n > 3600 && n < 4400) }
        for n in buckets { #expect(n > 25 && n < 110) }
        // Flipping one input bit flips about half of the output bits.
        var flipped = 0
        for index in 0..<256 {
            var key = Array(bytes("avalanche-test-key-0001"))
            let a = hash(key)
            key[index % key.count] ^= UInt8(1 << (index % 8))
            flipped += (a ^ hash(key)).nonzeroBitCount
        }
        let average = Double(flipped) / 256
        #expect(average > 28 && average < 36)
    }
}
