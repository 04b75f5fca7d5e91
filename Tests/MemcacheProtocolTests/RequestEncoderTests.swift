import Buffers
import Testing
@testable import MemcacheProtocol

/// Encodes with `body` into a fresh buffer and returns the bytes.
func encoded(_ body: (inout ByteBuffer) -> Void) -> [UInt8] {
    var buffer = ByteBuffer(capacity: 16)
    body(&buffer)
    return buffer.withReadableBytes { Array($0) }
}

func withBytes<R>(_ text: String, _ body: (UnsafeRawBufferPointer) -> R) -> R {
    let bytes = b(text)
    return bytes.withUnsafeBytes(body)
}

@Suite("Request encoder")
struct RequestEncoderTests {
    @Test("requests come out byte for byte and parse back")
    func roundTrips() {
        let cases: [([UInt8], String, Outcome)] = [
            (encoded { buffer in withBytes("foo") { RequestEncoder.appendGet($0, to: &buffer) } },
             "get foo\r\n", req(.get, key: "foo")),
            (encoded { buffer in withBytes("foo") { RequestEncoder.appendGet($0, withCas: true, to: &buffer) } },
             "gets foo\r\n", req(.gets, key: "foo")),
            (encoded { buffer in
                RequestEncoder.appendRetrievalStart(.gats, exptime: -1, to: &buffer)
                for key in ["a", "bb", "ccc"] { withBytes(key) { RequestEncoder.appendKey($0, to: &buffer) } }
                RequestEncoder.appendLineEnd(to: &buffer)
             }, "gats -1 a bb ccc\r\n", req(.gats, key: "a", keys: ["a", "bb", "ccc"], exptime: -1)),
            (encoded { buffer in
                withBytes("k") { key in withBytes("a\r\nb") { value in
                    RequestEncoder.appendStorage(.set, key: key, flags: 4294967295, exptime: 30, value: value,
                                                 noreply: true, to: &buffer)
                } }
             }, "set k 4294967295 30 4 noreply\r\na\r\nb\r\n",
             req(.set, key: "k", flags: 4294967295, exptime: 30, data: "a\\r\\nb", noreply: true)),
            (encoded { buffer in
                withBytes("k") { key in withBytes("") { value in
                    RequestEncoder.appendStorage(.cas, key: key, value: value, casUnique: 77, to: &buffer)
                } }
             }, "cas k 0 0 0 77\r\n\r\n", req(.cas, key: "k", cas: 77, data: "")),
            (encoded { buffer in withBytes("k") { RequestEncoder.appendDelete($0, noreply: true, to: &buffer) } },
             "delete k noreply\r\n", req(.delete, key: "k", noreply: true)),
            (encoded { buffer in withBytes("k") { RequestEncoder.appendArithmetic(.decr, key: $0, delta: 18446744073709551615, to: &buffer) } },
             "decr k 18446744073709551615\r\n", req(.decr, key: "k", delta: 18446744073709551615)),
            (encoded { buffer in withBytes("k") { RequestEncoder.appendTouch($0, exptime: 100, to: &buffer) } },
             "touch k 100\r\n", req(.touch, key: "k", exptime: 100)),
            (encoded { buffer in withBytes("k") { RequestEncoder.appendMeta(.metaGet, key: $0, flags: "v f T30", to: &buffer) } },
             "mg k v f T30\r\n", meta(.metaGet, key: "k", letters: "Tfv", tokens: "v f T30", ttl: 30)),
            (encoded { buffer in withBytes("k") { RequestEncoder.appendMeta(.metaDelete, key: $0, to: &buffer) } },
             "md k\r\n", meta(.metaDelete, key: "k")),
            (encoded { buffer in withBytes("k") { key in withBytes("xy") { value in
                RequestEncoder.appendMetaSet(key, value: value, flags: "T5 q", to: &buffer) } } },
             "ms k 2 T5 q\r\nxy\r\n", meta(.metaSet, key: "k", letters: "Tq", tokens: "T5 q", ttl: 5, data: "xy")),
            (encoded { RequestEncoder.appendMetaNoop(to: &$0) }, "mn\r\n", req(.metaNoop)),
        ]
        for (bytes, text, expected) in cases {
            #expect(bytes == b(text))
            #expect(parse(bytes) == expected.resolved(bytes))
        }
    }
}
