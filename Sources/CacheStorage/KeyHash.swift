/// The key hash: 64 bits, 8 bytes per step, non-cryptographic.
///
/// Each 8-byte word is multiplied, rotated and folded into the accumulator, so
/// a 20-byte key costs three rounds; a final avalanche spreads every input bit
/// over the whole result, because the store uses both ends of it: the high bits
/// pick the shard, the low bits the bucket.
enum KeyHash {
    private static let prime1: UInt64 = 0x9E37_79B9_7F4A_7C15
    private static let prime2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    private static let prime3: UInt64 = 0x1656_67B1_9E37_79F9
    private static let prime4: UInt64 = 0x85EB_CA77_C2B2_AE63

    static func hash(_ key: UnsafeRawBufferPointer) -> UInt64 {
        let count = key.count
        // The length goes into the seed so that keys differing only by trailing zero bytes differ.
        var accumulator = prime3 &+ UInt64(truncatingIfNeeded: count) &* prime1
        guard let base = key.baseAddress else { return avalanche(accumulator) }
        var offset = 0
        while offset + 8 <= count {
            // Safe because offset + 8 <= count: the 8 bytes are inside the key.
            let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            accumulator = round(accumulator, word)
            offset += 8
        }
        if offset < count {
            accumulator = round(accumulator, tail(base + offset, count: count - offset))
        }
        return avalanche(accumulator)
    }

    @inline(__always)
    private static func round(_ accumulator: UInt64, _ word: UInt64) -> UInt64 {
        let mixed = rotateLeft(word &* prime2, 31) &* prime1
        return rotateLeft(accumulator ^ mixed, 27) &* prime1 &+ prime4
    }

    /// The last 1...7 bytes as a little-endian word, read without going past the key.
    @inline(__always)
    private static func tail(_ bytes: UnsafeRawPointer, count: Int) -> UInt64 {
        var word: UInt64 = 0
        var shift: UInt64 = 0
        var offset = 0
        if count & 4 != 0 {
            // Safe because count >= 4 here, so bytes 0..<4 are inside the key.
            word = UInt64(UInt32(littleEndian: bytes.loadUnaligned(as: UInt32.self)))
            shift = 32
            offset = 4
        }
        if count & 2 != 0 {
            // Safe because offset + 2 <= count.
            word |= UInt64(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))) << shift
            shift += 16
            offset += 2
        }
        if count & 1 != 0 {
            // Safe because offset + 1 == count.
            word |= UInt64(bytes.load(fromByteOffset: offset, as: UInt8.self)) << shift
        }
        return word
    }

    @inline(__always)
    private static func avalanche(_ value: UInt64) -> UInt64 {
        var h = value
        h ^= h >> 33
        h = h &* prime2
        h ^= h >> 29
        h = h &* prime3
        h ^= h >> 32
        return h
    }

    @inline(__always)
    private static func rotateLeft(_ value: UInt64, _ bits: UInt64) -> UInt64 {
        (value << bits) | (value >> (64 - bits))
    }
}
