@testable import CacheNode
import Testing

@Suite struct PrefixStatisticsTests {
    private func dump(_ statistics: PrefixStatistics) -> String {
        String(decoding: statistics.dump(), as: UTF8.self)
    }

    private func key(_ text: String, _ body: (UnsafeRawBufferPointer) -> Void) {
        Array(text.utf8).withUnsafeBytes(body)
    }

    @Test(arguments: [
        ("", UInt32(0)),
        ("hello", UInt32(0x248b_fa47)),
        ("The quick brown fox jumps over the lazy dog", UInt32(0x2e4f_f723)),
    ])
    func murmurHash3MatchesTheReferenceVectors(text: String, expected: UInt32) {
        key(text) { #expect(MurmurHash3.x86_32($0) == expected) }
    }

    @Test func countsGetsHitsSetsAndDeletesPerPrefix() {
        let statistics = PrefixStatistics(enabled: true)
        key("a:1") { statistics.recordSet($0) }
        key("a:2") { statistics.recordGet($0, hit: true) }
        key("a:3") { statistics.recordGet($0, hit: false) }
        key("a:") { statistics.recordDelete($0) }
        #expect(dump(statistics) == "PREFIX a get 2 hit 1 set 1 del 1\r\nEND\r\n")
    }

    @Test func keysWithoutTheDelimiterOrWithANulBeforeItAreNotCounted() {
        let statistics = PrefixStatistics(enabled: true)
        key("plain") { statistics.recordGet($0, hit: true) }
        key("a\u{0}b:c") { statistics.recordSet($0) }
        #expect(statistics.prefixCount == 0)
        #expect(dump(statistics) == "END\r\n")
        key(":x") { statistics.recordGet($0, hit: false) }
        #expect(dump(statistics) == "PREFIX  get 1 hit 0 set 0 del 0\r\nEND\r\n")
    }

    @Test func theDelimiterIsConfigurable() {
        let statistics = PrefixStatistics(delimiter: UInt8(ascii: "/"), enabled: true)
        key("a:b/c") { statistics.recordSet($0) }
        #expect(dump(statistics) == "PREFIX a:b get 0 hit 0 set 1 del 0\r\nEND\r\n")
    }

    @Test func dumpIsInBucketOrderNewestFirstWithinABucket() {
        // "user" and "user129" share bucket 13 of 256; "p5" is in bucket 15, after them.
        let statistics = PrefixStatistics(enabled: true)
        for name in ["user:1", "user129:1", "p5:1"] {
            key(name) { statistics.recordSet($0) }
        }
        #expect(dump(statistics) == """
            PREFIX user129 get 0 hit 0 set 1 del 0\r
            PREFIX user get 0 hit 0 set 1 del 0\r
            PREFIX p5 get 0 hit 0 set 1 del 0\r
            END\r

            """)
    }

    @Test func aPrefixMatchesALongerEntryOfItsBucketAsMemcachedCompares() {
        let statistics = PrefixStatistics(enabled: true)
        key("user129:1") { statistics.recordGet($0, hit: false) }
        key("user:1") { statistics.recordGet($0, hit: true) }
        #expect(dump(statistics) == "PREFIX user129 get 2 hit 1 set 0 del 0\r\nEND\r\n")
    }

    @Test func theTableIsBoundedAndKnownPrefixesKeepCounting() {
        let statistics = PrefixStatistics(enabled: true, capacity: 3)
        for index in 0..<10 {
            key("p\(index):k") { statistics.recordSet($0) }
        }
        #expect(statistics.prefixCount == 3)
        key("p0:k") { statistics.recordSet($0) }
        #expect(dump(statistics).contains("PREFIX p0 get 0 hit 0 set 2 del 0\r\n"))
        #expect(!dump(statistics).contains("PREFIX p3 "))
        statistics.clear()
        #expect(statistics.prefixCount == 0)
        key("p9:k") { statistics.recordSet($0) }
        #expect(dump(statistics) == "PREFIX p9 get 0 hit 0 set 1 del 0\r\nEND\r\n")
    }

    @Test func offKeepsTheTable() {
        let statistics = PrefixStatistics()
        #expect(!statistics.isEnabled)
        statistics.setEnabled(true)
        #expect(statistics.isEnabled)
        key("a:1") { statistics.recordSet($0) }
        statistics.setEnabled(false)
        #expect(!statistics.isEnabled)
        #expect(dump(statistics) == "PREFIX a get 0 hit 0 set 1 del 0\r\nEND\r\n")
    }
}
