/// Base64 for meta-command keys (`b` flag), with memcached 1.6.18's decoding rules,
/// which are looser than RFC 4648 (all observed on the binary with `mg <key> b k`):
/// - bytes outside `A-Z a-z 0-9 + / =` are skipped (`a!2V5` decodes as `a2V5`);
/// - the number of remaining symbols must be a non-zero multiple of 4
///   (`a2V5=` fails, `a2U=a2V` fails);
/// - `=` decodes as zero bits wherever it stands; decoding stops after the first
///   4-symbol group that holds any `=`: one `=` drops one output byte, two drop
///   two, three or four make the key invalid (`a2U=a2V5` decodes as `ke`,
///   `=a2V` as the two bytes 0x01 0xAD, `a===` fails);
/// - an empty result is a failure (`CLIENT_ERROR error decoding key`).
///
/// No allocation: the caller provides the output memory.
public enum Base64 {
    /// The decoded length of `source`, or nil when memcached would refuse it.
    @inlinable
    public static func decodedLength(_ source: UnsafeRawBufferPointer) -> Int? {
        guard let base = source.baseAddress else { return nil }
        return decode(base, 0, source.count, into: nil)
    }

    /// Decodes `source` into `destination` (which needs at least `source.count / 4 * 3`
    /// bytes, so a buffer as long as the source always fits). Returns the decoded
    /// length, or nil when memcached would refuse the key or `destination` is too short.
    @inlinable
    public static func decode(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> Int? {
        guard let base = source.baseAddress else { return nil }
        return decode(base, 0, source.count, into: destination)
    }

    /// The length `encode` writes for `count` input bytes.
    @inlinable
    public static func encodedLength(_ count: Int) -> Int { (count + 2) / 3 * 4 }

    /// Standard padded base64 of `source` into `destination` (at least
    /// `encodedLength(source.count)` bytes); returns the length written. memcached
    /// re-encodes a binary key this way when it echoes it (`k` with `b`).
    @inlinable
    public static func encode(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> Int {
        let needed = encodedLength(source.count)
        precondition(destination.count >= needed, "base64 destination too short")
        guard let input = source.baseAddress, let output = destination.baseAddress else { return 0 }
        var read = 0
        var written = 0
        while read + 3 <= source.count {
            let b0 = UInt32(input.load(fromByteOffset: read, as: UInt8.self))
            let b1 = UInt32(input.load(fromByteOffset: read + 1, as: UInt8.self))
            let b2 = UInt32(input.load(fromByteOffset: read + 2, as: UInt8.self))
            let group = b0 << 16 | b1 << 8 | b2
            output.storeBytes(of: symbol(group >> 18), toByteOffset: written, as: UInt8.self)
            output.storeBytes(of: symbol(group >> 12), toByteOffset: written + 1, as: UInt8.self)
            output.storeBytes(of: symbol(group >> 6), toByteOffset: written + 2, as: UInt8.self)
            output.storeBytes(of: symbol(group), toByteOffset: written + 3, as: UInt8.self)
            read += 3
            written += 4
        }
        let left = source.count - read
        if left > 0 {
            let b0 = UInt32(input.load(fromByteOffset: read, as: UInt8.self))
            let b1 = left == 2 ? UInt32(input.load(fromByteOffset: read + 1, as: UInt8.self)) : 0
            let group = b0 << 16 | b1 << 8
            output.storeBytes(of: symbol(group >> 18), toByteOffset: written, as: UInt8.self)
            output.storeBytes(of: symbol(group >> 12), toByteOffset: written + 1, as: UInt8.self)
            output.storeBytes(of: left == 2 ? symbol(group >> 6) : UInt8(ascii: "="), toByteOffset: written + 2, as: UInt8.self)
            output.storeBytes(of: UInt8(ascii: "="), toByteOffset: written + 3, as: UInt8.self)
            written += 4
        }
        return written
    }

    // MARK: - Implementation

    /// The 6-bit value of a base64 symbol (`=` counts as 0), or 0xFF for bytes memcached skips.
    @inlinable @inline(__always)
    static func value(_ byte: UInt8) -> UInt8 {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): return byte &- UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return byte &- UInt8(ascii: "a") &+ 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte &- UInt8(ascii: "0") &+ 52
        case UInt8(ascii: "+"): return 62
        case UInt8(ascii: "/"): return 63
        case UInt8(ascii: "="): return 0
        default: return 0xFF
        }
    }

    @inlinable @inline(__always)
    static func symbol(_ sixBits: UInt32) -> UInt8 {
        let v = UInt8(truncatingIfNeeded: sixBits & 63)
        switch v {
        case 0..<26: return UInt8(ascii: "A") &+ v
        case 26..<52: return UInt8(ascii: "a") &+ (v &- 26)
        case 52..<62: return UInt8(ascii: "0") &+ (v &- 52)
        case 62: return UInt8(ascii: "+")
        default: return UInt8(ascii: "/")
        }
    }

    /// Decodes `base[start..<end]`; with a nil destination only measures.
    @inlinable
    static func decode(_ base: UnsafeRawPointer, _ start: Int, _ end: Int,
                       into destination: UnsafeMutableRawBufferPointer?) -> Int? {
        var symbols = 0
        for index in start..<end where value(base.load(fromByteOffset: index, as: UInt8.self)) != 0xFF {
            symbols += 1
        }
        if symbols == 0 || symbols % 4 != 0 { return nil }
        if let destination, destination.count < symbols / 4 * 3 { return nil }
        let output = destination?.baseAddress
        var length = 0
        var group: UInt32 = 0
        var inGroup = 0
        var padding = 0
        for index in start..<end {
            let byte = base.load(fromByteOffset: index, as: UInt8.self)
            let sixBits = value(byte)
            if sixBits == 0xFF { continue }
            if byte == UInt8(ascii: "=") { padding += 1 }
            group = group << 6 | UInt32(sixBits)
            inGroup += 1
            if inGroup == 4 {
                if let output {
                    output.storeBytes(of: UInt8(truncatingIfNeeded: group >> 16), toByteOffset: length, as: UInt8.self)
                    output.storeBytes(of: UInt8(truncatingIfNeeded: group >> 8), toByteOffset: length + 1, as: UInt8.self)
                    output.storeBytes(of: UInt8(truncatingIfNeeded: group), toByteOffset: length + 2, as: UInt8.self)
                }
                length += 3
                group = 0
                inGroup = 0
                if padding > 0 {
                    if padding > 2 { return nil }
                    length -= padding
                    break
                }
            }
        }
        return length > 0 ? length : nil
    }
}
