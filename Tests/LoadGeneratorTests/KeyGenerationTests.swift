import Testing
@testable import LoadGenerator

@Suite struct KeyLayoutTests {
    @Test func padsTheIndexBetweenPrefixAndEnd() throws {
        let layout = try KeyLayout(prefix: "key:", keySize: 12, keyCount: 1000)
        #expect(layout.key(0) == "key:00000000")
        #expect(layout.key(42) == "key:00000042")
        #expect(layout.key(999) == "key:00000999")
    }

    @Test(arguments: [1, 10, 100_000, 12_345_678])
    func everyKeyHasExactlyKeySizeBytes(_ count: UInt64) throws {
        let layout = try KeyLayout(prefix: "memtier-", keySize: 32, keyCount: count)
        for index in [0, count / 2, count - 1] {
            #expect(layout.key(index).utf8.count == 32)
        }
    }

    @Test func scratchRewritesOnlyTheDigitsAndLeavesNoStaleOnes() throws {
        let layout = try KeyLayout(prefix: "p", keySize: 8, keyCount: 100_000)
        let scratch = KeyScratch(layout: layout)
        _ = scratch.format(99_999)
        #expect(String(decoding: scratch.format(7), as: UTF8.self) == "p0000007")
    }

    @Test func keysParseBackToTheirIndex() throws {
        let layout = try KeyLayout(prefix: "key:", keySize: 32, keyCount: 100_000)
        for index: UInt64 in [0, 1, 77_777, 99_999] {
            let key = Array(layout.key(index).utf8)
            #expect(key.withUnsafeBytes { layout.index(ofKey: $0) } == index)
        }
        for foreign in ["key:1", "xey:0000000000000000000000000001", "key:00000000000000000000000000000x",
                        "key:0000000000000000000000000100000"] {
            let bytes = Array(foreign.utf8)
            #expect(bytes.withUnsafeBytes { layout.index(ofKey: $0) } == nil, "\(foreign)")
        }
    }

    @Test func rejectsLayoutsMemcachedCouldNotStore() {
        #expect(throws: ConfigurationError("--key-size 6 is too small: the prefix (4 bytes) and 5 digits for 100000 keys need 9")) {
            try KeyLayout(prefix: "key:", keySize: 6, keyCount: 100_000)
        }
        #expect(throws: ConfigurationError("--key-size 251 exceeds memcached's limit of 250 bytes")) {
            try KeyLayout(prefix: "k", keySize: 251, keyCount: 10)
        }
        #expect(throws: ConfigurationError.self) { try KeyLayout(prefix: "a b", keySize: 32, keyCount: 10) }
        #expect(throws: ConfigurationError.self) { try KeyLayout(prefix: "k", keySize: 32, keyCount: 0) }
    }
}

@Suite struct KeySamplerTests {
    @Test func uniformCoversTheKeySpaceEvenly() {
        var sampler = KeySampler(pattern: .uniform, keyCount: 10, zipf: nil, random: FastRandom(seed: 7))
        var counts = [Int](repeating: 0, count: 10)
        for _ in 0..<100_000 { counts[Int(sampler.next())] += 1 }
        // Each bucket expects 10,000; 5 standard deviations is ~475.
        for count in counts { #expect(abs(count - 10_000) < 500) }
    }

    @Test func sequentialWrapsAndThreadsStartOnTheirOwnShare() {
        var first = KeySampler(pattern: .sequential, keyCount: 10, zipf: nil, random: FastRandom(seed: 1),
                               threadIndex: 0, threadCount: 2)
        var second = KeySampler(pattern: .sequential, keyCount: 10, zipf: nil, random: FastRandom(seed: 1),
                                threadIndex: 1, threadCount: 2)
        #expect((0..<12).map { _ in first.next() } == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])
        #expect((0..<6).map { _ in second.next() } == [5, 6, 7, 8, 9, 0])
    }

    @Test func sameSeedSameSequence() {
        var a = KeySampler(pattern: .uniform, keyCount: 1_000_000, zipf: nil, random: FastRandom(seed: 99))
        var b = KeySampler(pattern: .uniform, keyCount: 1_000_000, zipf: nil, random: FastRandom(seed: 99))
        #expect((0..<100).map { _ in a.next() } == (0..<100).map { _ in b.next() })
    }
}

@Suite struct ZipfTests {
    @Test(arguments: [0.5, 0.99, 1.2])
    func frequenciesFollowTheDistribution(_ exponent: Double) {
        let zipf = ZipfDistribution(keyCount: 1000, exponent: exponent)
        var random = FastRandom(seed: 2024)
        let draws = 400_000
        var counts = [Int](repeating: 0, count: 1000)
        for _ in 0..<draws {
            let index = zipf.sample(&random)
            counts[Int(index)] += 1
        }
        // The hottest ranks, each within 5 standard deviations of its expectation.
        for rank in [0, 1, 2, 9, 99] {
            let p = zipf.probability(of: UInt64(rank))
            let expected = p * Double(draws)
            let deviation = (expected * (1 - p)).squareRoot()
            #expect(abs(Double(counts[rank]) - expected) < 5 * deviation + 1, "rank \(rank): \(counts[rank]) vs \(expected)")
        }
        // And the mass of the cold half.
        let coldExpected = (500..<1000).reduce(0.0) { $0 + zipf.probability(of: UInt64($1)) } * Double(draws)
        let cold = counts[500...].reduce(0, +)
        #expect(abs(Double(cold) - coldExpected) < 0.03 * coldExpected)
    }

    @Test func everyIndexIsInRangeAndTheTablesAreCheapToBuild() {
        let zipf = ZipfDistribution(keyCount: 100_000, exponent: 0.99)
        var random = FastRandom(seed: 5)
        var maximum: UInt64 = 0
        for _ in 0..<100_000 { maximum = max(maximum, zipf.sample(&random)) }
        #expect(maximum < 100_000)
        #expect(maximum > 50_000, "the tail is reachable")
    }

    @Test func oneKeyAlwaysDrawsIt() {
        let zipf = ZipfDistribution(keyCount: 1, exponent: 0.99)
        var random = FastRandom(seed: 5)
        for _ in 0..<100 { #expect(zipf.sample(&random) == 0) }
    }
}
