import COpenSSLCrypto

/// The hash functions ketama rings use, on raw bytes. Points are always MD5
/// (libmemcached weighted, twemproxy) or one-at-a-time (libmemcached plain
/// KETAMA); a key's position may use any of `TwemproxyKeyHash` under twemproxy's rules.
/// Pure functions, callable from any thread; none allocates.
enum RingHash {
    /// The digest of `bytes` read as four little-endian words, the way both
    /// libmemcached (`ketama_server_hash`) and twemproxy (`ketama_hash`) cut it.
    static func md5Words(_ bytes: UnsafeRawBufferPointer) -> (UInt32, UInt32, UInt32, UInt32) {
        memcluster_md5_le_words(bytes.baseAddress, bytes.count).word
    }

    /// A key's position in the weighted rings: the first digest word.
    static func md5(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        md5Words(bytes).0
    }

    /// libhashkit's `hashkit_one_at_a_time` (Bob Jenkins' one-at-a-time), the
    /// hash of libmemcached's plain KETAMA for both points and keys.
    static func oneAtATime(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var value: UInt32 = 0
        for byte in bytes {
            // libhashkit reads bytes through `char`, which is signed on x86-64:
            // 0x80...0xFF enter sign-extended. (On aarch64 Linux `char` is
            // unsigned, so libmemcached there hashes such keys differently.)
            value &+= UInt32(bitPattern: Int32(Int8(bitPattern: byte)))
            value &+= value &<< 10
            value ^= value &>> 6
        }
        value &+= value &<< 3
        value ^= value &>> 11
        value &+= value &<< 15
        return value
    }

    // twemproxy's FNV variants, bit for bit as nutcracker computes them on
    // x86-64: key bytes are read through a signed `char`, so 0x80...0xFF enter
    // sign-extended; its "fnv1a_64" runs in 32 bits (the 64-bit basis and
    // prime cut to their low halves), its "fnv1_64" in 64 bits cut at the end.

    @inline(__always)
    private static func signExtended(_ byte: UInt8) -> UInt64 { UInt64(bitPattern: Int64(Int8(bitPattern: byte))) }

    static func fnv1_64(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in bytes { hash = (hash &* 0x100_0000_01B3) ^ signExtended(byte) }
        return UInt32(truncatingIfNeeded: hash)
    }

    static func fnv1a_64(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var hash: UInt32 = 0x8422_2325
        for byte in bytes { hash = (hash ^ UInt32(truncatingIfNeeded: signExtended(byte))) &* 0x0000_01B3 }
        return hash
    }

    static func fnv1_32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var hash: UInt32 = 0x811C_9DC5
        for byte in bytes { hash = (hash &* 0x0100_0193) ^ UInt32(truncatingIfNeeded: signExtended(byte)) }
        return hash
    }

    static func fnv1a_32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var hash: UInt32 = 0x811C_9DC5
        for byte in bytes { hash = (hash ^ UInt32(truncatingIfNeeded: signExtended(byte))) &* 0x0100_0193 }
        return hash
    }

    /// MurmurHash2 as twemproxy seeds it (0xdeadbeef times the length),
    /// reading the key four bytes at a time, little-endian.
    static func murmur(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        let m: UInt32 = 0x5BD1_E995
        let length = UInt32(truncatingIfNeeded: bytes.count)
        var hash = (0xDEAD_BEEF &* length) ^ length
        var index = 0
        while bytes.count - index >= 4 {
            var k = UInt32(bytes[index]) | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2]) << 16
                | UInt32(bytes[index + 3]) << 24
            k = k &* m
            k ^= k >> 24
            k = k &* m
            hash = (hash &* m) ^ k
            index += 4
        }
        switch bytes.count - index {
        case 3:
            hash ^= UInt32(bytes[index + 2]) << 16
            hash ^= UInt32(bytes[index + 1]) << 8
            hash = (hash ^ UInt32(bytes[index])) &* m
        case 2:
            hash ^= UInt32(bytes[index + 1]) << 8
            hash = (hash ^ UInt32(bytes[index])) &* m
        case 1:
            hash = (hash ^ UInt32(bytes[index])) &* m
        default:
            break
        }
        hash ^= hash >> 13
        hash = hash &* m
        hash ^= hash >> 15
        return hash
    }

    /// CRC-32 (IEEE 802.3, reflected, as zlib computes it): twemproxy's `crc32a`.
    static func crc32a(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc = crc32Table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        return crc ^ 0xFFFF_FFFF
    }

    /// twemproxy's `crc32`: the high half of `crc32a`, cut to 15 bits
    /// (libmemcached's CRC key hash).
    static func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        (crc32a(bytes) >> 16) & 0x7FFF
    }

    private static let crc32Table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 != 0 ? (value >> 1) ^ 0xEDB8_8320 : value >> 1 }
        return value
    }
}
