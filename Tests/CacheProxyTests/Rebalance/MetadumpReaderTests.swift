@testable import CacheProxy
import Testing

/// The lines of `lru_crawler metadump all`, as memcached 1.6.18 writes them.
@Suite("Metadump lines")
struct MetadumpReaderTests {
    @Test func keysAreDecoded() {
        let line = Array("key=user%3A42%25x exp=-1 la=1733356800 cas=7 fetch=no cls=1 size=70".utf8)
        #expect(MetadumpReader.key(of: line) == Array("user:42%x".utf8))
        #expect(MetadumpReader.key(of: Array("key=plain".utf8)) == Array("plain".utf8))
    }

    @Test func hostileLinesAreRefused() {
        for text in ["exp=-1 key=a", "key=", "key=%4", "key=%zz x", "BUSY currently processing crawler request"] {
            #expect(MetadumpReader.key(of: Array(text.utf8)) == nil, "\(text)")
        }
    }
}
