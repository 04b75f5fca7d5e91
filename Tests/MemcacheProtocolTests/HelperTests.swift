import Testing
@testable import MemcacheProtocol

@Suite("MemcachedNumber")
struct MemcachedNumberTests {
    static func run<T>(_ text: String, _ body: (UnsafeRawBufferPointer, Range<Int>) -> T?) -> T? {
        let bytes = b(text)
        return bytes.withUnsafeBytes { body($0, 0..<bytes.count) }
    }

    // (token, safe_strtoul result) — values confirmed through `set k <flags> ...` / `get k`.
    @Test("uint32 like safe_strtoul on LP64", arguments: [
        ("0", UInt32?.some(0)), ("42", 42), ("+5", 5), ("-0", 0), ("4294967295", 4294967295),
        ("4294967296", 0), ("18446744073709551615", 4294967295), ("-18446744073709551615", 1),
        ("-9223372036854775809", 4294967295), ("18446744073709551616", nil), ("-1", nil), ("-4294967295", nil),
        ("", nil), ("+", nil), ("-", nil), ("abc", nil), ("0x1", nil), ("1.5", nil), ("5\\x09zz", 5), ("5\rzz", 5),
        ("\\x095", 5), ("\\x0b\\x0c5", 5), ("5a", nil), ("00000000000000000000000000042", 42),
        ("9999999999999999999", 2313682943), ("99999999999999999999", nil), ("0000000000000000001", 1),
    ])
    func uint32(_ token: String, _ expected: UInt32?) {
        #expect(Self.run(token) { MemcachedNumber.uint32($0, $1) } == expected)
    }

    @Test("uint64 like safe_strtoull", arguments: [
        ("18446744073709551615", UInt64?.some(18446744073709551615)), ("18446744073709551616", nil),
        ("-1", nil), ("-18446744073709551615", 1), ("-9223372036854775808", nil),
        ("-9223372036854775809", 9223372036854775807), ("9223372036854775808", 9223372036854775808), ("x", nil),
    ])
    func uint64(_ token: String, _ expected: UInt64?) {
        #expect(Self.run(token) { MemcachedNumber.uint64($0, $1) } == expected)
    }

    @Test("int32 like safe_strtol into int32_t", arguments: [
        ("0", Int32?.some(0)), ("-1", -1), ("2147483647", 2147483647), ("2147483648", -2147483648),
        ("4294967296", 0), ("4294967297", 1), ("-9223372036854775808", 0), ("9223372036854775807", -1),
        ("9223372036854775808", nil), ("-9223372036854775809", nil), ("1.5", nil), ("+1", 1), ("--1", nil),
    ])
    func int32(_ token: String, _ expected: Int32?) {
        #expect(Self.run(token) { MemcachedNumber.int32($0, $1) } == expected)
    }

    @Test("a range inside a larger buffer")
    func subrange() {
        let bytes = b("xx 123 yy")
        bytes.withUnsafeBytes { raw in
            #expect(MemcachedNumber.uint32(raw, 3..<6) == 123)
            #expect(MemcachedNumber.uint32(raw, 3..<7) == 123)   // trailing space is white space
            #expect(MemcachedNumber.uint32(raw, 2..<6) == 123)   // leading space skipped
            #expect(MemcachedNumber.uint32(raw, 3..<8) == 123)   // strtoul stops at the space
            #expect(MemcachedNumber.uint32(raw, 4..<8) == 23)
            #expect(MemcachedNumber.uint32(raw, 7..<9) == nil)
        }
    }
}

@Suite("Base64")
struct Base64Tests {
    static func decode(_ text: String) -> [UInt8]? {
        let source = b(text)
        var output = [UInt8](repeating: 0, count: max(source.count, 1))
        let length = source.withUnsafeBytes { input in
            output.withUnsafeMutableBytes { Base64.decode(input, into: $0) }
        }
        let measured = source.withUnsafeBytes { Base64.decodedLength($0) }
        #expect(measured == length)
        return length.map { Array(output[0..<$0]) }
    }

    // Each decoded key re-encoded by memcached (`mg <key> b k` echoes `k<base64>`).
    @Test("memcached's lenient decoding", arguments: [
        ("a2V5", "a2V5"), ("a2U=", "a2U="), ("a2==", "aw=="), ("a2V5a2U=", "a2V5a2U="), ("a2U=a2V5", "a2U="),
        ("a!2V5", "a2V5"), ("a2V5\\x01", "a2V5"), ("a2=5", "a2A="), ("=a2V", "Aa0="), ("AA==", "AA=="),
    ])
    func decodes(_ input: String, _ reencoded: String) throws {
        let decoded = try #require(Self.decode(input))
        var encoded = [UInt8](repeating: 0, count: Base64.encodedLength(decoded.count))
        let length = decoded.withUnsafeBytes { source in encoded.withUnsafeMutableBytes { Base64.encode(source, into: $0) } }
        #expect(length == encoded.count)
        #expect(String(decoding: encoded, as: UTF8.self) == reencoded)
    }

    @Test("refused keys", arguments: ["k", "a2V5=", "a===", "====", "a2U=a2V", "a2U=a", "", "!!!!"])
    func refuses(_ input: String) {
        #expect(Self.decode(input) == nil)
    }

    @Test("round trips every length")
    func roundTrip() {
        for count in 0...40 {
            let data = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            var encoded = [UInt8](repeating: 0, count: Base64.encodedLength(count))
            _ = data.withUnsafeBytes { source in encoded.withUnsafeMutableBytes { Base64.encode(source, into: $0) } }
            if count == 0 { continue }
            #expect(Self.decode(String(decoding: encoded, as: UTF8.self)) == data)
        }
    }
}

@Suite("Command names")
struct CommandNameTests {
    @Test("packed constants spell the names", arguments: [
        ("get", CommandName.get), ("gets", CommandName.gets), ("gat", CommandName.gat), ("gats", CommandName.gats),
        ("bget", CommandName.bget), ("set", CommandName.set), ("add", CommandName.add), ("append", CommandName.append),
        ("replace", CommandName.replace), ("prepend", CommandName.prepend), ("cas", CommandName.cas),
        ("delete", CommandName.delete), ("incr", CommandName.incr), ("decr", CommandName.decr),
        ("touch", CommandName.touch), ("stats", CommandName.stats), ("shutdown", CommandName.shutdown),
        ("slabs", CommandName.slabs), ("version", CommandName.version), ("quit", CommandName.quit),
        ("watch", CommandName.watch), ("lru", CommandName.lru),
    ])
    func packed(_ name: String, _ constant: UInt64) {
        let bytes = b(name)
        #expect(bytes.withUnsafeBytes { CommandName.pack($0.baseAddress!, 0, bytes.count) } == constant)
        // The one-load form, on a buffer with bytes after the name.
        let padded = bytes + b(" xxxxxxxx")
        #expect(padded.withUnsafeBytes { CommandName.packWord($0.baseAddress!, 0, bytes.count) } == constant)
    }

    @Test("every error line is distinct and CRLF-free")
    func errorLines() {
        let errors: [ProtocolError] = [
            .error, .badCommandLineFormat, .deleteUsage, .badDataChunk, .invalidExptime, .invalidDelta,
            .nonNumericValue, .lineTooLong, .objectTooLarge, .outOfMemoryStoring, .metaInvalidFlag,
            .metaDuplicateFlag, .metaInvalidOrDuplicateFlag, .metaBadToken, .metaOpaqueTooLong,
            .metaGetFlagsTooLong, .metaFlagsTooLong, .metaIncorrectModeLength, .metaSetInvalidMode,
            .metaArithmeticInvalidMode, .metaInvalidInitial, .metaInvalidDelta, .metaKeyDecoding, .tlsNotEnabled,
        ]
        let lines = errors.map { $0.line.description }
        #expect(Set(lines).count == lines.count)
        #expect(lines.allSatisfy { !$0.contains("\r") && !$0.contains("\n") })
    }
}
