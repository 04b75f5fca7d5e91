/// xoshiro256** seeded through SplitMix64: a few instructions per draw, no locks,
/// and the same stream for the same seed on every machine (so a run and a test
/// can be repeated). One per worker thread; not for cryptography.
public struct FastRandom: RandomNumberGenerator, Sendable {
    @usableFromInline var s0: UInt64
    @usableFromInline var s1: UInt64
    @usableFromInline var s2: UInt64
    @usableFromInline var s3: UInt64

    public init(seed: UInt64) {
        var mixer = seed
        s0 = SplitMix64.next(&mixer)
        s1 = SplitMix64.next(&mixer)
        s2 = SplitMix64.next(&mixer)
        s3 = SplitMix64.next(&mixer)
    }

    @inlinable @inline(__always)
    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = s3 << 45 | s3 >> 19
        return result
    }

    /// Uniform in `0..<bound` by multiply-high (Lemire); the bias is below 2^-32
    /// for the bounds a load generator uses.
    @inlinable @inline(__always)
    public mutating func next(below bound: UInt64) -> UInt64 {
        next().multipliedFullWidth(by: bound).high
    }
}

/// SplitMix64 (Steele, Lea, Flood): seeds generators and hashes key indexes
/// into value lengths and pattern offsets.
public enum SplitMix64 {
    @inlinable @inline(__always)
    public static func next(_ state: inout UInt64) -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return mix(state)
    }

    /// A bijective 64-bit finalizer: every input bit affects every output bit.
    @inlinable @inline(__always)
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
