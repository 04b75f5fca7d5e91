import Testing
@testable import CacheProxy

/// nutcracker's key hashes. Published vectors where the function is a standard
/// one; the ring placement itself is compared with a running nutcracker in
/// Tests/integration/test_proxy_placement.py.
@Suite struct TwemproxyKeyHashTests {
    private func hash(_ keyHash: TwemproxyKeyHash, _ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { keyHash.hash($0) }
    }

    @Test func fnv32MatchesThePublishedVectors() {
        #expect(hash(.fnv1_32, Array("a".utf8)) == 0x050c_5d7e)
        #expect(hash(.fnv1_32, Array("foobar".utf8)) == 0x31f0_b262)
        #expect(hash(.fnv1a_32, Array("a".utf8)) == 0xe40c_292c)
        #expect(hash(.fnv1a_32, Array("foobar".utf8)) == 0xbf9c_f968)
        #expect(hash(.fnv1a_32, []) == 0x811c_9dc5)
    }

    @Test func fnv64KeepsTheLow32BitsAsNutcrackerDoes() {
        // FNV-1a 64 of "a" is af63dc4c8601ec8c; FNV-1 64 is af63bd4c8601b7be.
        #expect(hash(.fnv1a_64, Array("a".utf8)) == 0x8601_ec8c)
        #expect(hash(.fnv1_64, Array("a".utf8)) == 0x8601_b7be)
    }

    @Test func crcMatchesTheStandardCheckValue() {
        // CRC-32 of "123456789" is cbf43926; nutcracker's crc32 keeps 15 bits of it.
        #expect(hash(.crc32a, Array("123456789".utf8)) == 0xcbf4_3926)
        #expect(hash(.crc32, Array("123456789".utf8)) == 0x4bf4)
    }

    @Test func md5AndOneAtATimeAreTheRingsOwn() {
        #expect(hash(.md5, Array("abc".utf8)) == 0x9850_0190)
        #expect(hash(.oneAtATime, Array("a".utf8)) == 3_392_050_242)
    }

    @Test func highBytesGoInSignExtendedAsNutcrackersCharDoes() {
        // 0xe9 read as a signed char is ffffffe9: the FNV xor sees all 32 bits.
        #expect(hash(.fnv1a_32, [0xe9]) == 0xebf3_8b44)
        #expect(hash(.fnv1_32, [0xe9]) == 0xfaf3_a2f6)
        #expect(hash(.fnv1_64, [0xe9]) == 0x79fe_4836)
    }

    @Test func everyNameIsNutcrackersSpelling() {
        #expect(TwemproxyKeyHash.allCases.map(\.rawValue) == [
            "md5", "one_at_a_time", "fnv1_64", "fnv1a_64", "fnv1_32", "fnv1a_32", "crc32", "crc32a", "murmur",
        ])
    }
}
