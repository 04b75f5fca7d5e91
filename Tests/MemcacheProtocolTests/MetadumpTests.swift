import Buffers
import Testing
@testable import MemcacheProtocol

@Suite("lru_crawler metadump: classes and lines")
struct MetadumpTests {
    static let one: UInt64 = 1 << 1, two: UInt64 = 1 << 2

    // Answers of memcached 1.6.18 to `lru_crawler metadump <classes>` with
    // one item in class 1: a dump (listed), BADCLASS (nil) or NOTSTARTED (empty).
    static let classLists: [(String, CrawlerClasses?)] = [
        ("all", .all), ("hash", .hash), ("1", .listed(one)), ("1,2", .listed(one | two)), ("1,,2", .listed(one | two)),
        ("63", .listed(1 << 63)), (",", .listed(0)), ("1,", .listed(one)), ("4294967297", .listed(one)),
        ("0", nil), ("64", nil), ("-1", nil), ("x", nil), ("1,x", nil), ("ALL", nil), ("HASH", nil), ("1.0", nil),
    ]

    @Test("class lists as memcached reads them", arguments: classLists)
    func classes(_ text: String, _ expected: CrawlerClasses?) {
        #expect(CrawlerClasses.parse(text) == expected)
    }

    @Test func membership() {
        let listed = CrawlerClasses.listed(1 << 1 | 1 << 39)
        #expect(listed.contains(1) && listed.contains(39))
        #expect(!listed.contains(2) && !listed.contains(0) && !listed.contains(64))
        #expect(CrawlerClasses.all.contains(42) && CrawlerClasses.hash.contains(1))
        #expect(CrawlerClasses.listed(0).isEmpty && !listed.isEmpty && !CrawlerClasses.all.isEmpty)
    }

    static func line(_ key: [UInt8], expires: Int64?, fetched: Bool = false) -> String {
        var output = ByteBuffer(capacity: 256)
        key.withUnsafeBytes {
            MetadumpLine.append(key: $0, expires: expires, lastAccess: 1_796_428_333, cas: 7, fetched: fetched,
                                slabClass: 2, size: 105, to: &output)
        }
        return String(decoding: output.readableBytes, as: UTF8.self)
    }

    @Test func lineAsMemcachedPrintsIt() {
        #expect(Self.line(Array("a".utf8), expires: nil, fetched: true)
                == "key=a exp=-1 la=1796428333 cas=7 fetch=yes cls=2 size=105\n")
        #expect(Self.line(Array("b".utf8), expires: 1_796_428_433)
                == "key=b exp=1796428433 la=1796428333 cas=7 fetch=no cls=2 size=105\n")
    }

    // Keys recorded from memcached 1.6.18 (a binary key stored with meta `b`, and
    // every printable byte a text key may hold).
    @Test func keysAreURIEncoded() {
        let binary: [UInt8] = Array(1..<40) + [0xFF, 0x80, 0x20, 0x0D, 0x0A, 0x25]
        #expect(Self.line(binary, expires: nil).hasPrefix(
            "key=%01%02%03%04%05%06%07%08%09%0A%0B%0C%0D%0E%0F%10%11%12%13%14%15%16%17%18%19%1A%1B%1C%1D%1E%1F%20"
            + "%21%22%23%24%25%26%27%FF%80%20%0D%0A%25 exp=-1 "))
        #expect(Self.line(Array("ABCxyz09-._~!\"#$&'()*+,/:;<=>?@[\\]^`{|}".utf8), expires: nil).hasPrefix(
            "key=ABCxyz09-._~%21%22%23%24%26%27%28%29%2A%2B%2C%2F%3A%3B%3C%3D%3E%3F%40%5B%5C%5D%5E%60%7B%7C%7D exp=-1 "))
        #expect(Self.line([0x00, 0x7F, 0xC3, 0xA9], expires: nil).hasPrefix("key=%00%7F%C3%A9 "))
    }
}
