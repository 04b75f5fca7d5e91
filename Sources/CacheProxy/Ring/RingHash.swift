import COpenSSLCrypto

/// The two hash functions ketama rings use, on raw bytes.
/// Pure functions, callable from any thread; neither allocates.
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
}
