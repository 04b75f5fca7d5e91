import Glibc

/// The value stored under each key, derived from the key index alone, so a fill,
/// a later run and `--verify` agree without remembering anything per key:
///
///   length = min + mix(index) % (max - min + 1)
///   bytes  = pattern[offset ..< offset + length], offset = (mix(index) >> 32) % 4096
///
/// The pattern is pseudo-random printable text from a fixed seed. A value from
/// the wrong key matches only if both its length and its offset agree (< 1/4096).
/// Immutable after init and shared by all threads.
public final class ValuePattern: @unchecked Sendable {
    public let sizes: ValueSizeRange
    public static let offsetCount = 4096
    private let bytes: UnsafeMutableRawPointer
    private let span: UInt64

    public init(sizes: ValueSizeRange) {
        self.sizes = sizes
        span = UInt64(sizes.maximum - sizes.minimum) + 1
        let count = sizes.maximum + ValuePattern.offsetCount
        bytes = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 16)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        // Fixed, not --seed: values must not depend on the run that wrote them.
        var random = FastRandom(seed: 0x6D65_6D63_6C75_7374)
        for index in 0..<count {
            bytes.storeBytes(of: alphabet[Int(random.next() & 63)], toByteOffset: index, as: UInt8.self)
        }
    }

    deinit { bytes.deallocate() }

    @inline(__always)
    public func length(forKey index: UInt64) -> Int {
        span == 1 ? sizes.minimum : sizes.minimum + Int(SplitMix64.mix(index) % span)
    }

    /// The value for key `index`; valid as long as this pattern lives.
    @inline(__always)
    public func value(forKey index: UInt64) -> UnsafeRawBufferPointer {
        let hash = SplitMix64.mix(index)
        let length = span == 1 ? sizes.minimum : sizes.minimum + Int(hash % span)
        let offset = Int((hash >> 32) & UInt64(ValuePattern.offsetCount - 1))
        return UnsafeRawBufferPointer(start: bytes + offset, count: length)
    }

    /// True when `data` is exactly what this tool writes under key `index`.
    public func matches(_ data: UnsafeRawBufferPointer, key index: UInt64) -> Bool {
        let expected = value(forKey: index)
        guard data.count == expected.count else { return false }
        if data.count == 0 { return true }
        return memcmp(data.baseAddress!, expected.baseAddress!, data.count) == 0
    }
}
