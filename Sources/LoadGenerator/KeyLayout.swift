import Glibc

/// How key index `i` becomes key bytes: `<prefix><i, zero-padded>`, exactly
/// `keySize` bytes, e.g. prefix `key:`, size 12, index 42 -> `key:00000042`.
/// Fixed-length keys make every request the same size and let a reply's key be
/// turned back into its index (for `--verify`).
public struct KeyLayout: Sendable, Equatable {
    public let prefix: [UInt8]
    public let keySize: Int
    public let keyCount: UInt64
    /// Decimal digits of the largest index: the only bytes that change per key.
    public let digits: Int

    /// memcached's limit.
    public static let maximumKeySize = 250

    public init(prefix: String, keySize: Int, keyCount: UInt64) throws(ConfigurationError) {
        let prefixBytes = Array(prefix.utf8)
        guard keyCount >= 1 else { throw ConfigurationError("--keys must be at least 1") }
        if let bad = prefixBytes.first(where: { $0 <= 0x20 || $0 == 0x7F }) {
            throw ConfigurationError("--key-prefix must not contain spaces or control characters (found byte \(bad))")
        }
        let digits = KeyLayout.decimalDigits(keyCount - 1)
        let minimum = prefixBytes.count + digits
        guard keySize >= minimum else {
            throw ConfigurationError("--key-size \(keySize) is too small: the prefix (\(counted(prefixBytes.count, "byte"))) and \(counted(digits, "digit")) for \(counted(keyCount, "key")) need \(minimum)")
        }
        guard keySize <= KeyLayout.maximumKeySize else {
            throw ConfigurationError("--key-size \(keySize) exceeds memcached's limit of \(KeyLayout.maximumKeySize) bytes")
        }
        self.prefix = prefixBytes
        self.keySize = keySize
        self.keyCount = keyCount
        self.digits = digits
    }

    /// The key for `index` as text (tests and messages; the hot path uses `KeyScratch`).
    public func key(_ index: UInt64) -> String {
        let scratch = KeyScratch(layout: self)
        return String(decoding: scratch.format(index), as: UTF8.self)
    }

    /// The index a key names, or nil if the bytes are not a key of this layout.
    public func index(ofKey key: UnsafeRawBufferPointer) -> UInt64? {
        guard key.count == keySize else { return nil }
        for position in 0..<prefix.count where key[position] != prefix[position] { return nil }
        var value: UInt64 = 0
        for position in prefix.count..<keySize {
            let digit = key[position] &- UInt8(ascii: "0")
            guard digit <= 9 else { return nil }
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(digit))
            guard !overflow1, !overflow2 else { return nil }
            value = sum
        }
        return value < keyCount ? value : nil
    }

    static func decimalDigits(_ value: UInt64) -> Int {
        var digits = 1
        var rest = value / 10
        while rest > 0 { digits += 1; rest /= 10 }
        return digits
    }
}

/// One key's worth of memory, preformatted with the prefix and zero padding, so
/// formatting a key rewrites only its last `digits` bytes. One per worker thread;
/// the returned bytes are valid until the next `format`.
public final class KeyScratch {
    private let base: UnsafeMutableRawPointer
    private let size: Int
    private let digits: Int

    public init(layout: KeyLayout) {
        size = layout.keySize
        digits = layout.digits
        base = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        base.initializeMemory(as: UInt8.self, repeating: UInt8(ascii: "0"), count: size)
        layout.prefix.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    deinit { base.deallocate() }

    @inline(__always)
    public func format(_ index: UInt64) -> UnsafeRawBufferPointer {
        var rest = index
        var position = size
        // Safe because `digits` <= `size` - prefix length (checked by KeyLayout) and
        // index < keyCount has at most `digits` digits.
        for _ in 0..<digits {
            position -= 1
            base.storeBytes(of: UInt8(truncatingIfNeeded: rest % 10) &+ 48, toByteOffset: position, as: UInt8.self)
            rest /= 10
        }
        return UnsafeRawBufferPointer(start: base, count: size)
    }
}
