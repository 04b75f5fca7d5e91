import Testing

/// The replay's comparison is corpus.py's: narrow, and as sensitive.
@Suite("Corpus comparison in Swift")
struct CorpusFixtureTests {
    static let dump = Array(("MN\r\nkey=b exp=1796428425 la=1796428325 cas=3 fetch=no cls=1 size=62\n"
        + "key=a exp=-1 la=1796428325 cas=1 fetch=yes cls=1 size=61\nEND\r\n").utf8)

    static func normalized(_ text: [UInt8]) -> [UInt8] { CorpusFixture.normalize(text, ["metadump"]) }

    @Test func metadumpLinesSortedWithTheirClocksMasked() {
        #expect(String(decoding: Self.normalized(Self.dump), as: UTF8.self)
                == "MN\r\nkey=a exp=-1 la=<t> cas=1 fetch=yes cls=1 size=61\n"
                + "key=b exp-la=100 la=<t> cas=3 fetch=no cls=1 size=62\nEND\r\n")
        let value = Array("VALUE k 0 48\r\nkey=a exp=5 la=1 cas=1 fetch=no cls=1 size=1\r\nEND\r\n".utf8)
        #expect(Self.normalized(value) == value)
    }

    @Test func oneTickOnlyOnTheTimes() {
        func variant(_ from: String, _ to: String) -> [UInt8] {
            Self.normalized(Array(String(decoding: Self.dump, as: UTF8.self).replacingOccurrences(of: from, with: to).utf8))
        }
        let base = Self.normalized(Self.dump)
        #expect(CorpusFixture.sameWithinATick(base, variant("exp=1796428425", "exp=1796428426")))
        #expect(!CorpusFixture.sameWithinATick(base, variant("exp=1796428425", "exp=1796428427")))
        #expect(!CorpusFixture.sameWithinATick(base, variant("cas=3", "cas=4")))
        #expect(!CorpusFixture.sameWithinATick(base, variant("fetch=yes", "fetch=no")))
        #expect(!CorpusFixture.sameWithinATick(base, variant("key=a ", "key=c ")))
        #expect(CorpusFixture.sameWithinATick(Array("VA 1 t30 c2\r\n".utf8), Array("VA 1 t29 c2\r\n".utf8)))
        #expect(!CorpusFixture.sameWithinATick(Array("VA 1 t30 c2\r\n".utf8), Array("VA 1 t30 c3\r\n".utf8)))
        #expect(!CorpusFixture.sameWithinATick(Array("VA 1 t-1\r\n".utf8), Array("VA 1 t0\r\n".utf8)))
        #expect(!CorpusFixture.sameWithinATick(Array("VALUE t30 0 1\r\n".utf8), Array("VALUE t29 0 1\r\n".utf8)))
    }
}
